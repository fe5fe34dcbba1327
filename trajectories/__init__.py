"""Trajectories: the Dataset type, readers and writers for every supported format."""
from .dataset import Dataset, Episode, starts_from_flags, starts_from_ids
from .errors import DatasetError
from .io import load_dataset, save_dataset

__all__ = ["Dataset", "DatasetError", "Episode", "load_dataset", "save_dataset", "starts_from_flags", "starts_from_ids"]
