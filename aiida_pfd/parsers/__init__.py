"""Parsers of the PFD CalcJobs, one per CalcJob."""
