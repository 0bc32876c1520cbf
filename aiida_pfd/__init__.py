"""AiiDA plugin for the PFD workflow: pre-training, fine-tuning and distillation of machine-learning force fields."""

__version__ = '0.1.0'
