"""Local POD feature distillation (PLOP, Douillard et al., CVPR 2021).

Pooled Outputs Distillation keeps the student's intermediate features close to the teacher's
through width- and height-pooled statistics of squared activations, computed globally and
inside local windows at several scales, so both long-range and local structure are kept.

PLOP's own form (``normalize=False``; ``features_distillation`` and ``_local_pod`` in PLOP's
``train.py``, arthurdouillard/CVPR2021_PLOP@4b4a060, lines 716-972 and 979-1014): each window
is mean-pooled along width and along height, every pool of every scale is concatenated, and
the distance is one L2 norm over that concatenation per image, averaged over the batch; each
layer's distance is weighted (0.01 for features, 0.0005 for logits), and their sum divided by
the number of layers. The variant with each pool L2-normalised (``normalize=True``) is this
project's earlier reading of the paper (the ``plop-normalised`` strategy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from incremental.losses._checks import at_least_fp32


def local_pod_embedding(
    features: torch.Tensor, scales: Sequence[int] = (1, 2, 4), normalize: bool = True
) -> torch.Tensor:
    """POD embedding of one feature map.

    For each scale s, the map of squared activations is cut into s x s windows of
    ``(H // s) x (W // s)`` (at least 1 x 1; maps smaller than s keep fewer windows); each
    window gives its mean over height (a C x w vector) and over width (a C x h vector),
    L2-normalised when ``normalize``. PLOP's windows are the same on the square maps it uses.

    Args:
        features: (B, C, H, W).

    Returns:
        (B, D) with D = Σ_s s² · C · (H/s + W/s) (windows floor-divided).
    """
    if features.dim() != 4:
        raise ValueError(f"features: expected (B, C, H, W), got {tuple(features.shape)}")
    b, _, h, w = features.shape
    squared = at_least_fp32(features).pow(2)
    parts = []
    for s in scales:
        kh, kw = max(h // s, 1), max(w // s, 1)
        for i in range(min(s, h)):
            for j in range(min(s, w)):
                window = squared[..., i * kh : (i + 1) * kh, j * kw : (j + 1) * kw]
                pools = (window.mean(dim=2).reshape(b, -1), window.mean(dim=3).reshape(b, -1))
                for pool in pools:
                    parts.append(torch.nn.functional.normalize(pool, dim=1) if normalize else pool)
    return torch.cat(parts, dim=1)


def local_pod_loss(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    scales: Sequence[int] = (1, 2, 4),
    normalize: bool = True,
    layer_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """``Σ_l w_l · mean_b ||POD(s_l) - POD(t_l)||₂ / L`` over the L layers.

    Args:
        student_features, teacher_features: same-length sequences of (B, C_l, H_l, W_l) maps.
        normalize: L2-normalise each pool (see :func:`local_pod_embedding`).
        layer_weights: w_l per layer (default 1: the mean over layers).
    """
    if len(student_features) != len(teacher_features) or not student_features:
        raise ValueError(
            f"expected the same non-zero number of student and teacher feature maps, got "
            f"{len(student_features)} and {len(teacher_features)}"
        )
    weights = [1.0] * len(student_features) if layer_weights is None else list(layer_weights)
    if len(weights) != len(student_features):
        raise ValueError(f"layer_weights: {len(weights)} for {len(student_features)} layers")
    losses = []
    for layer, (s, t) in enumerate(zip(student_features, teacher_features, strict=True)):
        if s.shape != t.shape:
            raise ValueError(
                f"layer {layer}: student features {tuple(s.shape)} vs teacher {tuple(t.shape)}"
            )
        student = local_pod_embedding(s, scales, normalize)
        diff = student - local_pod_embedding(t.detach(), scales, normalize)
        losses.append(weights[layer] * diff.norm(dim=1).mean())
    return torch.stack(losses).sum() / len(losses)
