"""Load the user's already trained model: the teacher of their first step.

Four kinds of file, picked automatically from what ``path`` holds (or named by ``format``):

- ``model-file``: a model file written by this framework (spec, classes and weights inside).
- ``smp-pretrained``: a folder written by smp's ``model.save_pretrained(folder)``
  (``config.json`` + ``model.safetensors``); rebuilt offline: the config's
  ``encoder_weights`` are never downloaded, the saved weights replace them anyway.
- ``state-dict`` with ``spec``: a ``torch.save``'d state dict, or a checkpoint holding one under
  ``state_dict``/``model`` (Lightning, plain PyTorch), of an smp model that
  :func:`~incremental.models.create_model` builds from ``spec`` (``{arch, encoder, ...}``).
  A common key prefix (``model.``, ``net.``...) is found and stripped.
- ``state-dict`` with ``factory``: any PyTorch module, built by calling the function named
  ``"package.module:function"`` with ``factory_kwargs``, then loading the state dict. Its final
  classifier is the last ``Conv2d`` with ``len(classes)`` outputs unless ``classifier`` names it.

Every file is read with ``weights_only=True`` or as safetensors: loading never runs code from the
file. A factory is the user's own code, named in their config; model files that record one are
rebuilt only when the caller allows it (see :func:`~incremental.models.build_model`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from incremental.io import load_weights_only
from incremental.models.create import build_model
from incremental.models.head import find_classifier
from incremental.models.model_file import FORMAT, load_model_file

__all__ = ["EXISTING_MODEL_KEYS", "FORMATS", "ExistingModel", "load_existing_model"]

FORMATS = ("auto", "model-file", "smp-pretrained", "state-dict")
EXISTING_MODEL_KEYS = ("path", "format", "spec", "factory", "factory_kwargs", "classifier")


@dataclass
class ExistingModel:
    """A loaded teacher.

    Attributes:
        model: the network in eval mode; its classifier has ``len(classes)`` outputs.
        spec: how to rebuild it (:func:`~incremental.models.build_model` arguments), saved in
            the model files of the steps trained from it.
        classes: its output class names, in channel order; None when the file does not say
            (smp folders, state dicts): the config's transition then names them.
    """

    model: nn.Module
    spec: dict[str, Any]
    classes: list[str] | None


def load_existing_model(
    config: Mapping[str, Any], base_dir: str | Path = ".", classes: list[str] | None = None
) -> ExistingModel:
    """Load the model that ``config`` (an ``old_model:`` block) describes.

    Args:
        config: keys of :data:`EXISTING_MODEL_KEYS`; ``path`` is relative to ``base_dir``.
        classes: the old classes the experiment declares; needed to build a state dict's model
            and checked against the model's output channels and its file's class names.

    Raises:
        ValueError: naming the key or file: unknown keys, unreadable or unsafe files,
            weights that do not fit, class names or counts that disagree.
    """
    unknown = sorted(set(config) - set(EXISTING_MODEL_KEYS))
    if unknown:
        raise ValueError(
            f"old_model: unknown key(s) {unknown}; allowed: {list(EXISTING_MODEL_KEYS)}"
        )
    if not config.get("path"):
        raise ValueError("old_model: missing key 'path' (the trained model's file or folder)")
    path = Path(base_dir) / Path(str(config["path"])).expanduser()
    fmt = config.get("format", "auto")
    if fmt not in FORMATS:
        raise ValueError(f"old_model.format: {fmt!r} is not one of {list(FORMATS)}")
    if not path.exists():
        raise ValueError(f"old_model.path: not found: {path}")
    if fmt == "auto":
        fmt = _detect_format(path)
    if fmt == "model-file":
        loaded = _from_model_file(path, config)
    elif fmt == "smp-pretrained":
        loaded = _from_smp_folder(path, classes)
    else:
        loaded = _from_state_dict(path, config, classes)
    _check_classes(loaded, classes, path)
    if config.get("classifier"):
        loaded.spec["classifier"] = str(config["classifier"])
    return loaded


def _detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "config.json").is_file():
            return "smp-pretrained"
        raise ValueError(
            f"old_model.path: {path} is a folder without config.json; expected an smp "
            "save_pretrained folder, a model file or a state dict file"
        )
    payload = _torch_load(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return "model-file"
    return "state-dict"


def _torch_load(path: Path) -> Any:
    return load_weights_only(
        path,
        "PyTorch file",
        "save the weights only: torch.save(model.state_dict(), path)",
    )


def _from_model_file(path: Path, config: Mapping[str, Any]) -> ExistingModel:
    for key in ("spec", "factory"):
        if config.get(key):
            raise ValueError(
                f"old_model.{key}: {path} is a model file, which records how to build its "
                "network; remove the key"
            )
    loaded = load_model_file(path)
    return ExistingModel(loaded.build(allow_factory=True), dict(loaded.spec), loaded.classes)


def _from_smp_folder(path: Path, classes: list[str] | None) -> ExistingModel:
    try:
        saved = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path / 'config.json'}: cannot read ({error})") from None
    arch = saved.pop("_model_class", None)
    if arch is None or "encoder_name" not in saved:
        raise ValueError(
            f"{path / 'config.json'}: not an smp config (needs _model_class and encoder_name)"
        )
    num_classes = int(saved.pop("classes", len(classes or ()) or 1))
    # The saved weights replace any pretrained ones: never download them.
    saved.pop("encoder_weights", None)
    spec = {"arch": arch, "encoder": saved.pop("encoder_name"), **saved}
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{path}: model.safetensors not found (smp save_pretrained folder)")
    from safetensors.torch import load_file

    model = build_model(spec, num_classes)
    _load_weights(model, load_file(str(weights)), weights)
    return ExistingModel(model.eval(), spec, None)


def _from_state_dict(
    path: Path, config: Mapping[str, Any], classes: list[str] | None
) -> ExistingModel:
    spec: dict[str, Any]
    if config.get("factory"):
        if config.get("spec"):
            raise ValueError("old_model: give either 'spec' (an smp model) or 'factory', not both")
        spec = {
            "factory": str(config["factory"]),
            "factory_kwargs": dict(config.get("factory_kwargs") or {}),
        }
    elif config.get("spec"):
        spec = dict(config["spec"])
    else:
        raise ValueError(
            f"old_model: {path} holds weights only; say how to build the network with 'spec' "
            "(create_model arguments, e.g. {arch: Unet, encoder: resnet34}) or 'factory' "
            "('package.module:function' returning an nn.Module)"
        )
    if not classes:
        raise ValueError(
            f"old_model: {path} does not name its classes; list them in the transition's "
            "old_classes"
        )
    state = _state_dict_of(_torch_load(path), path)
    model = build_model(spec, len(classes), allow_factory=True, classifier=config.get("classifier"))
    _load_weights(model, state, path)
    return ExistingModel(model.eval(), spec, None)


def _state_dict_of(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict or of a checkpoint that holds one."""
    if isinstance(payload, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(payload.get(key), Mapping):
                payload = payload[key]
                break
    if not isinstance(payload, Mapping) or not any(
        isinstance(v, torch.Tensor) for v in payload.values()
    ):
        raise ValueError(f"{path}: no state dict found (a mapping of parameter names to tensors)")
    return {str(k): v for k, v in payload.items() if isinstance(v, torch.Tensor)}


def _load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``model``, stripping the prefix a wrapper added (``model.``...)."""
    expected = model.state_dict()
    first = next(iter(expected))
    prefixes = sorted({k[: -len(first)] for k in state if k.endswith(first)}, key=len)
    prefix = prefixes[0] if prefixes else ""
    stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(stripped))
    mismatched = sorted(
        k for k in set(expected) & set(stripped) if stripped[k].shape != expected[k].shape
    )
    if missing or mismatched:
        details = "; ".join(
            part
            for part in (
                f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                f"{len(mismatched)} of another shape (e.g. {mismatched[0]}: file "
                f"{tuple(stripped[mismatched[0]].shape)} vs model "
                f"{tuple(expected[mismatched[0]].shape)})"
                if mismatched
                else "",
            )
            if part
        )
        raise ValueError(f"{path}: the weights do not fit the configured network: {details}")
    model.load_state_dict({k: stripped[k] for k in expected})


def _check_classes(loaded: ExistingModel, classes: list[str] | None, path: Path) -> None:
    """The model's class names and output count agree with the experiment's old classes."""
    if classes is not None and loaded.classes is not None and list(classes) != loaded.classes:
        raise ValueError(
            f"transition.old_classes {list(classes)} differ from the classes of {path}: "
            f"{loaded.classes} (same names, in channel order)"
        )
    names = loaded.classes if loaded.classes is not None else classes
    if names is None:
        raise ValueError(f"old_model: {path} does not name its classes; list them in old_classes")
    classifier = loaded.spec.get("classifier")
    if classifier:
        try:
            module = loaded.model.get_submodule(classifier)
        except AttributeError:
            raise ValueError(f"old_model.classifier: {path} has no module {classifier!r}") from None
        outputs = getattr(module, "out_channels", None)
    else:
        try:
            outputs = find_classifier(loaded.model)[1].out_channels
        except ValueError as error:
            raise ValueError(f"old_model: {path}: {error}; name it with 'classifier'") from None
    if outputs != len(names):
        raise ValueError(
            f"old_model: {path} outputs {outputs} classes but {len(names)} old classes are "
            f"declared ({list(names)})"
        )
