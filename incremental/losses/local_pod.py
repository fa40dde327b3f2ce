"""Local POD feature distillation (PLOP, Douillard et al., CVPR 2021).

Pooled Outputs Distillation keeps the student's intermediate features close to the teacher's
through width- and height-pooled statistics of squared activations, computed globally and
inside local windows at several scales, so both long-range and local structure are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from incremental.losses._checks import at_least_fp32


def local_pod_embedding(features: torch.Tensor, scales: Sequence[int] = (1, 2, 4)) -> torch.Tensor:
    """POD embedding of one feature map.

    For each scale s, the map is cut into s x s windows; each window gives its mean over height
    (a C x w vector) and over width (a C x h vector), each L2-normalised.

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
                along_width = window.mean(dim=2).reshape(b, -1)
                along_height = window.mean(dim=3).reshape(b, -1)
                parts.append(torch.nn.functional.normalize(along_width, dim=1))
                parts.append(torch.nn.functional.normalize(along_height, dim=1))
    return torch.cat(parts, dim=1)


def local_pod_loss(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    scales: Sequence[int] = (1, 2, 4),
) -> torch.Tensor:
    """Mean over layers of the batch-mean L2 distance between POD embeddings.

    Args:
        student_features, teacher_features: same-length sequences of (B, C_l, H_l, W_l) maps.
    """
    if len(student_features) != len(teacher_features) or not student_features:
        raise ValueError(
            f"expected the same non-zero number of student and teacher feature maps, got "
            f"{len(student_features)} and {len(teacher_features)}"
        )
    losses = []
    for layer, (s, t) in enumerate(zip(student_features, teacher_features, strict=True)):
        if s.shape != t.shape:
            raise ValueError(
                f"layer {layer}: student features {tuple(s.shape)} vs teacher {tuple(t.shape)}"
            )
        diff = local_pod_embedding(s, scales) - local_pod_embedding(t.detach(), scales)
        losses.append(diff.norm(dim=1).mean())
    return torch.stack(losses).mean()
