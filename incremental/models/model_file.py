"""The model file: weights, class names and how to rebuild the network, nothing executable.

A model file is a plain dict saved with ``torch.save`` and loaded with ``weights_only=True``, so
loading one never runs code from the file. It holds the smp architecture spec, the state dict,
the class names and, for split classes, the parent each class evaluates under, and a SHA-256 of
its tensors: a damaged file (flipped bytes inside a weight) is refused on load, as are weights
that are not finite (which are never saved either).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from incremental.io import load_weights_only, write_atomic
from incremental.models.create import build_model

FORMAT = "incremental-model/1"


@dataclass
class ModelFile:
    """What a model file holds.

    Attributes:
        spec: how to build the network (:func:`~incremental.models.build_model`), without
            ``num_classes``.
        classes: output class names, in channel order.
        state_dict: the network's weights.
        parents: class -> parent class name for split children (empty if none).
        metadata: free-form plain data (scenario, strategy, seed, metrics).
    """

    spec: dict[str, Any]
    classes: list[str]
    state_dict: dict[str, torch.Tensor]
    parents: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def build(self, allow_factory: bool = False) -> nn.Module:
        """The network in eval mode, weights loaded.

        Args:
            allow_factory: rebuild a network made by user code (a ``factory`` spec, see
                :func:`~incremental.models.build_model`): importing it runs that code.
        """
        model = build_model(self.spec, len(self.classes), allow_factory=allow_factory)
        model.load_state_dict(self.state_dict)
        return model.eval()


def tensors_checksum(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def non_finite_tensors(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or infinity."""
    return [
        name
        for name, tensor in state_dict.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def save_model_file(
    path: str | Path,
    model: nn.Module,
    spec: dict[str, Any],
    classes: list[str] | tuple[str, ...],
    parents: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a model file atomically, with the checksum of its tensors.

    Raises:
        ValueError: a weight is not finite (a diverged run's model is no model).
    """
    # Contiguous: a file does not depend on the memory layout the weights were trained in.
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = non_finite_tensors(state)
    if bad:
        raise ValueError(
            f"{path}: not saved: {len(bad)} tensor(s) hold NaN or infinity (e.g. {bad[:3]})"
        )
    payload = {
        "format": FORMAT,
        "spec": plain_data(spec),
        "classes": list(classes),
        "parents": dict(parents or {}),
        "metadata": plain_data(metadata or {}),
        "state_dict": state,
        "checksum": tensors_checksum(state),
    }
    return write_atomic(path, lambda f: torch.save(payload, f), "the model file")


def load_model_file(path: str | Path) -> ModelFile:
    """Read a model file safely (``weights_only=True``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    payload = load_weights_only(path, "model file", "only incremental model files are accepted")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path}: not an incremental model file (format {got!r}, expected {FORMAT!r})"
        )
    state = payload["state_dict"]
    if "checksum" not in payload:
        warnings.warn(
            f"{path}: written without a checksum (by an older version): its weights cannot be "
            "checked for damage",
            stacklevel=2,
        )
    elif tensors_checksum(state) != payload["checksum"]:
        raise ValueError(
            f"{path}: damaged: its weights do not match the checksum written with them"
        )
    bad = non_finite_tensors(state)
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensor(s) hold NaN or infinity (e.g. {bad[:3]})")
    return ModelFile(
        spec=payload["spec"],
        classes=list(payload["classes"]),
        state_dict=payload["state_dict"],
        parents=dict(payload.get("parents", {})),
        metadata=dict(payload.get("metadata", {})),
    )


def plain_data(value: Any) -> Any:
    """Convert tuples and OmegaConf containers to plain lists and dicts, recursively, for safe
    loading (``torch.load(weights_only=True)``, ``yaml.safe_dump``)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value
