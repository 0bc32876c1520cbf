"""Workflows of the PFD method and the DFT labelling adaptors they use."""
