"""Data plugins: labelled datasets (``pfd.dataset``) and model files (``pfd.model``)."""

from .dataset import LabeledDataset
from .model import ModelData

__all__ = ('LabeledDataset', 'ModelData')
