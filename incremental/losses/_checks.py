"""Input checks shared by the losses."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum", "none")

#: Below this set probability, ``log p_S`` computed from probabilities loses precision: the
#: hand-written losses then take an exact path through logsumexp / log-softmax.
SMALLEST_SET_PROB = 1e-30


def check_logits(name: str, logits: torch.Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"{name}: expected (B, C, H, W), got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {logits.dtype}")


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is half or bfloat16 (logits under mixed-precision autocast):
    softmax sums and logs of small set probabilities need fp32's precision; the cast is part
    of the graph, so the gradient reaches the half-precision logits."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_candidates(logits: torch.Tensor, candidates: torch.Tensor) -> None:
    if candidates.shape != logits.shape:
        raise ValueError(
            f"candidates: expected the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(candidates.shape)}"
        )
    if candidates.dtype != torch.bool:
        raise ValueError(f"candidates: expected a bool tensor, got {candidates.dtype}")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_pixels(loss: torch.Tensor, weight: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a (B, H, W) per-pixel loss whose pixel weights are ``weight`` (0 = excluded).

    ``mean`` divides by the total weight; a batch with no weight gives a finite 0 that still
    carries a (zero) gradient, instead of the NaN of ``F.cross_entropy``.
    """
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / weight.sum().clamp_min(1e-12) if bool(weight.any()) else total * 0.0
