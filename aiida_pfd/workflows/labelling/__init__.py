"""Adaptors that turn structures into DFT labels (energy, forces, stress) with one DFT code each."""
