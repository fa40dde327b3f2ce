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
    # ~0.6 M parameters: the CPU default and the tests' model (timm's test_resnet encoder).
    "tiny-unet": {
        "arch": "Unet",
        "encoder": "tu-test_resnet",
        "decoder_channels": (64, 32, 16, 8, 8),
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


def segment_with_features(
    model: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and intermediate features of an smp model.

    Args:
        images: (B, 3, H, W).

    Returns:
        logits (B, C, H, W) and the encoder's stage outputs after the stem plus the decoder
        output, for feature distillation.
    """
    if not all(hasattr(model, a) for a in ("encoder", "decoder", "segmentation_head")):
        raise TypeError(
            f"{type(model).__name__} has no encoder/decoder/segmentation_head; feature "
            "distillation needs an smp model"
        )
    features = model.encoder(images)
    decoded = model.decoder(features)
    return model.segmentation_head(decoded), [*features[2:], decoded]
