"""Helpers for tests: tiny, offline-built artefacts such as a multi-task DeePMD-kit foundation checkpoint."""
