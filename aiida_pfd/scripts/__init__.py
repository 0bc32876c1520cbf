"""Programs that the CalcJobs run on the compute node: ``python -m aiida_pfd.scripts.<name> input.json``."""
