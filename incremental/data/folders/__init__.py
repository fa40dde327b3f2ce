"""Your own data: dataset folders (images/, masks/, a YAML each), the check that reads every
file once, and experiments (``kind: folders``) over your folders and your trained model."""

from incremental.data.folders.dataset import FolderDataset

__all__ = ["FolderDataset"]
