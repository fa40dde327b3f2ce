"""Create segmentation models by name through segmentation-models-pytorch.

Weights are off by default: nothing downloads unless asked. ``weights`` may name a local file
holding an encoder state dict (loaded with ``weights_only=True``), or ``"imagenet"`` (opt-in,
downloads through smp).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

#: Named model presets: smp architecture, encoder and keyword arguments.
PRESETS: dict[str, dict[str, Any]] = {
    # ~0.6 M parameters: the tests' model (timm's test_resnet encoder).
    "tiny-unet": {
        "arch": "Unet",
        "encoder": "tu-test_resnet",
        "decoder_channels": (64, 32, 16, 8, 8),
    },
    # ~0.7 M parameters, the CPU default: tiny-unet's encoder with the last decoder stages twice
    # as wide (16 channels at full resolution instead of 8), for about the same step time on a
    # CPU, so that sub-types of one parent (sneaker vs sandal) can be told apart.
    "small-unet": {
        "arch": "Unet",
        "encoder": "tu-test_resnet",
        "decoder_channels": (64, 48, 32, 16, 16),
    },
    # The papers' model (MiB, PLOP): DeepLabV3, ResNet-101, output stride 16.
    "deeplabv3-resnet101": {
        "arch": "DeepLabV3",
        "encoder": "resnet101",
        "encoder_output_stride": 16,
    },
    "deeplabv3plus-resnet50": {"arch": "DeepLabV3Plus", "encoder": "resnet50"},
    "unet-resnet18": {"arch": "Unet", "encoder": "resnet18"},
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(PRESETS)


def create_model(
    name: str | None = None,
    num_classes: int = 2,
    *,
    arch: str | None = None,
    encoder: str | None = None,
    weights: str | None = None,
    in_channels: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """A segmentation model with ``num_classes`` output channels.

    Args:
        name: a preset of :data:`PRESETS`; or None with ``arch`` and ``encoder`` given.
        num_classes: output channels.
        arch, encoder: smp architecture (``"Unet"``, ``"DeepLabV3"``...) and encoder
            (``"resnet101"``, ``"tu-test_resnet"``...); override the preset's.
        weights: None (random init), a path to a local encoder state dict, or ``"imagenet"``.
        **kwargs: passed to the smp architecture (``decoder_channels``...).
    """
    spec: dict[str, Any] = {}
    if name is not None:
        if name not in PRESETS:
            raise ValueError(f"unknown model {name!r}; known: {list_models()}")
        spec = dict(PRESETS[name])
    spec.update({k: v for k, v in (("arch", arch), ("encoder", encoder)) if v is not None})
    spec.update(kwargs)
    if "arch" not in spec or "encoder" not in spec:
        raise ValueError("create_model: give a preset name, or both arch and encoder")
    arch_name, encoder_name = spec.pop("arch"), spec.pop("encoder")
    local_file = weights is not None and weights != "imagenet"
    model = smp.create_model(
        arch_name,
        encoder_name=encoder_name,
        encoder_weights=None if local_file else weights,
        in_channels=in_channels,
        classes=num_classes,
        **spec,
    )
    if local_file:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"encoder weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = model.encoder.load_state_dict(state, strict=False)
        if unexpected or len(missing) == len(model.encoder.state_dict()):
            raise ValueError(
                f"{path}: does not match encoder {encoder_name!r} "
                f"({len(missing)} missing, {len(unexpected)} unexpected keys)"
            )
    return model


def build_model(
    spec: dict[str, Any],
    num_classes: int,
    *,
    allow_factory: bool = False,
    classifier: str | None = None,
) -> nn.Module:
    """The network a spec describes, with ``num_classes`` outputs.

    Args:
        spec: :func:`create_model` keyword arguments (an smp model), or ``{"factory":
            "package.module:function", "factory_kwargs": {...}}`` for any PyTorch module; either
            may hold ``classifier``, the qualified name of the final ``Conv2d``.
        allow_factory: a factory spec imports and calls the user's code; it must be allowed
            explicitly, since a spec may come from a file.
        classifier: overrides ``spec["classifier"]``.

    A factory's network whose classifier has another output count (a step added classes) gets
    a fresh ``Conv2d`` of ``num_classes`` outputs in its place, of the same geometry.
    """
    spec = dict(spec)
    classifier = classifier or spec.pop("classifier", None)
    if "factory" not in spec:
        return create_model(num_classes=num_classes, **spec)
    if not allow_factory:
        raise ValueError(
            f"this model is built by user code ({spec['factory']!r}); allow it explicitly "
            "(allow_factory=True, or --allow-factory on the command line) if you trust it"
        )
    model = _call_factory(str(spec["factory"]), dict(spec.get("factory_kwargs") or {}))
    from incremental.models.head import find_classifier, replace_classifier

    name, conv = (
        (classifier, model.get_submodule(classifier)) if classifier else find_classifier(model)
    )
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"classifier {name!r} is a {type(conv).__name__}, not a Conv2d")
    if conv.out_channels != num_classes:
        replace_classifier(model, name, num_classes)
    return model


def _call_factory(factory: str, kwargs: dict[str, Any]) -> nn.Module:
    import importlib

    module_name, sep, function_name = factory.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"factory: expected 'package.module:function', got {factory!r}")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"factory {factory!r}: cannot import it ({error})") from None
    model = function(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"factory {factory!r} returned a {type(model).__name__}, not an nn.Module")
    return model
