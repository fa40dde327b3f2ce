"""incremental: add and split classes of a trained segmentation model."""
