"""Sphinx configuration."""

project = 'aiida-pfd'
author = 'aiida-pfd developers'
extensions = ['myst_parser']
source_suffix = {'.md': 'markdown'}
exclude_patterns = ['_build']
html_theme = 'alabaster'
