"""Segmentation models: creation by name, classifier lookup, head expansion, model files."""

from incremental.models.create import PRESETS, build_model, create_model, list_models
from incremental.models.existing import ExistingModel, load_existing_model
from incremental.models.features import FEATURE_LAYERS, segment_with_features
from incremental.models.head import expand_head, find_classifier, replace_classifier
from incremental.models.model_file import ModelFile, load_model_file, save_model_file

__all__ = [
    "FEATURE_LAYERS",
    "PRESETS",
    "ExistingModel",
    "ModelFile",
    "build_model",
    "create_model",
    "expand_head",
    "find_classifier",
    "list_models",
    "load_existing_model",
    "load_model_file",
    "replace_classifier",
    "save_model_file",
    "segment_with_features",
]
