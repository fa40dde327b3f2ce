"""Intermediate feature maps of an smp model, for feature distillation.

Two sets of layers:

- ``"stages"``: the encoder's stage outputs after the stem (as smp returns them, after the
  activation) and the decoder output;
- ``"plop"``: PLOP's (``segmentation_module.py`` and ``models/resnet.py`` of
  arthurdouillard/CVPR2021_PLOP@4b4a060): the output of each ResNet stage *before* its last
  activation, the decoder output, and the logits before any upsampling.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

FEATURE_LAYERS = ("stages", "plop")
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _stage_modules(encoder: nn.Module) -> list[nn.Module] | None:
    """The four ResNet stages of an smp encoder (smp's own ResNets and timm's through
    ``tu-``), or None for another encoder."""
    for owner in (encoder, getattr(encoder, "model", None)):
        if owner is not None and all(
            isinstance(getattr(owner, n, None), nn.Sequential) for n in _STAGES
        ):
            return [getattr(owner, n) for n in _STAGES]
    return None


def _final_activation(block: nn.Module) -> nn.Module | None:
    """The activation a residual block applies last (after adding the shortcut): timm's
    ``act3`` / ``act2``, torchvision's shared ``relu`` (its last call)."""
    for name in ("act3", "act2", "relu"):
        if isinstance(getattr(block, name, None), nn.Module):
            return getattr(block, name)
    return None


@contextmanager
def stage_preactivations(encoder: nn.Module) -> Iterator[list[torch.Tensor] | None]:
    """Within the block, each forward of ``encoder`` records the four stages' outputs before
    their last activation into the yielded list (None when the encoder is no ResNet).

    An in-place activation gets a copy of its input, so the recorded tensor keeps the values
    before the activation (and the graph stays correct).
    """
    stages = _stage_modules(encoder)
    activations = [_final_activation(s[-1]) for s in stages] if stages else None
    if not activations or any(a is None for a in activations):
        yield None
        return
    captured: list[torch.Tensor | None] = [None] * len(activations)

    def recorder(index: int):
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            captured[index] = args[0]  # the last call of a shared activation is the final one
            return (args[0].clone(),) if getattr(module, "inplace", False) else None

        return hook

    handles = [a.register_forward_pre_hook(recorder(i)) for i, a in enumerate(activations)]
    out: list[torch.Tensor] = []
    try:
        yield out
    finally:
        for handle in handles:
            handle.remove()
        out.extend(t for t in captured if t is not None)


def segment_with_features(
    model: nn.Module, images: torch.Tensor, layers: str = "stages"
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and intermediate features of an smp model.

    Args:
        images: (B, 3, H, W).
        layers: ``"stages"`` or ``"plop"`` (see the module docstring). A non-ResNet encoder
            gives its stage outputs after the activation for ``"plop"`` too.

    Returns:
        logits (B, C, H, W) and the feature maps (B, D_l, H_l, W_l), deepest last.
    """
    if not all(hasattr(model, a) for a in ("encoder", "decoder", "segmentation_head")):
        raise TypeError(
            f"{type(model).__name__} has no encoder/decoder/segmentation_head; feature "
            "distillation needs an smp model"
        )
    if layers not in FEATURE_LAYERS:
        raise ValueError(f"layers: {layers!r} is not one of {list(FEATURE_LAYERS)}")
    if layers == "stages":
        features = model.encoder(images)
        decoded = model.decoder(features)
        return model.segmentation_head(decoded), [*features[2:], decoded]
    with stage_preactivations(model.encoder) as preactivations:
        features = model.encoder(images)
    stages = preactivations if preactivations else list(features[2:])
    decoded = model.decoder(features)
    head = list(model.segmentation_head)  # smp: conv, upsampling, activation
    small = head[0](decoded)
    logits = small
    for layer in head[1:]:
        logits = layer(logits)
    return logits, [*stages, decoded, small]
