"""Teacher-refined candidate sets.

Where the teacher is confident that a pixel is its old class k, the pixel's candidate set S can
shrink to S ∩ T(k) when that is not empty: an unlabeled pixel of a new image (S = every class
but the new one) that the teacher calls "car" becomes {car_other}. PLOP's pseudo-labels
(Douillard et al., CVPR 2021) are the new-class special case.
"""

from __future__ import annotations

import math

import torch


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over dim 1 divided by ``log K``: (B, K, H, W) -> (B, H, W) in [0, 1].

    A sum over classes (PLOP's code takes a mean, which shrinks entropies by K).
    """
    k = probs.shape[1]
    if k < 2:
        return torch.zeros_like(probs[:, 0])
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    return entropy / math.log(k)


def refine_candidates(
    candidates: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_sets: torch.Tensor,
    threshold: float = 0.7,
    criterion: str = "confidence",
) -> torch.Tensor:
    """Shrink candidate sets to S ∩ T(k*) where the teacher is confident in k*.

    Args:
        candidates: (B, C, H, W) bool.
        teacher_logits: (B, K, H, W).
        teacher_sets: (K, C) bool.
        threshold: ``"confidence"``: max teacher probability ≥ threshold; ``"entropy"``:
            normalised teacher entropy ≤ threshold.
        criterion: ``"confidence"`` or ``"entropy"``.

    Returns:
        (B, C, H, W) bool; S itself where the teacher is unsure or S ∩ T(k*) is empty.
    """
    with torch.no_grad():
        probs = teacher_logits.float().softmax(dim=1)
        confidence, best = probs.max(dim=1)
        if criterion == "confidence":
            confident = confidence >= threshold
        elif criterion == "entropy":
            confident = normalized_entropy(probs) <= threshold
        else:
            raise ValueError(f"criterion must be 'confidence' or 'entropy', got {criterion!r}")
        sets = teacher_sets.to(candidates.device)[best].permute(0, 3, 1, 2)
        refined = candidates & sets
        use = confident & refined.any(dim=1)
        return torch.where(use[:, None], refined, candidates)
