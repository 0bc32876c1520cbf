"""CalcJobs of PFD: DeePMD training, model labelling and evaluation, ASE molecular dynamics."""
