"""PLOP's entropy-thresholded pseudo-labels, with a correct per-class median.

Douillard et al., "PLOP: Learning without Forgetting for Continual Semantic Segmentation",
CVPR 2021. On unlabeled pixels of the new images, the teacher's prediction k* becomes the label
when the teacher's normalised entropy is below a per-class threshold: the median entropy of the
pixels the teacher assigns to k* over the training set (never below a base threshold); other
unlabeled pixels are ignored. The loss of each image is scaled by the share of its unlabeled
pixels that received a pseudo-label.

The original code has two bugs (DESIGN §3), fixed here: its histogram median adds the bin
index instead of the bin's count to the running sum (thresholds could exceed 1 and accept every
pseudo-label), and its entropy averages over classes instead of summing.
"""

from __future__ import annotations

import torch

from incremental.losses.refined_sets import normalized_entropy


class EntropyHistogram:
    """Histogram of normalised teacher entropy per predicted class, to take medians in
    bounded memory over a whole dataset.

    Args:
        num_classes: K, the teacher's classes.
        num_bins: resolution of the median (its error is at most 1 / num_bins).
    """

    def __init__(self, num_classes: int, num_bins: int = 100) -> None:
        self.num_bins = num_bins
        self.counts = torch.zeros(num_classes, num_bins, dtype=torch.long)

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor, pixel_mask: torch.Tensor) -> None:
        """Add the pixels where ``pixel_mask`` (B, H, W) is True; logits (B, K, H, W)."""
        probs = teacher_logits.float().softmax(dim=1)
        entropy = normalized_entropy(probs)[pixel_mask]
        predicted = probs.argmax(dim=1)[pixel_mask]
        bins = (entropy * self.num_bins).long().clamp_(0, self.num_bins - 1)
        flat = predicted.cpu() * self.num_bins + bins.cpu()
        self.counts += torch.bincount(flat, minlength=self.counts.numel()).view_as(self.counts)

    def medians(self) -> torch.Tensor:
        """(K,) median entropy per class, linearly interpolated inside the median's bin;
        NaN for a class the teacher never predicted."""
        counts = self.counts.double()
        total = counts.sum(dim=1)
        cumulative = counts.cumsum(dim=1)
        half = total / 2
        # First bin whose cumulative count reaches half the total.
        index = (cumulative < half[:, None]).sum(dim=1).clamp(max=self.num_bins - 1)
        before = torch.where(
            index > 0, cumulative.gather(1, (index - 1).clamp(min=0)[:, None])[:, 0], 0.0
        )
        in_bin = counts.gather(1, index[:, None])[:, 0].clamp_min(1)
        median = (index + (half - before) / in_bin) / self.num_bins
        return torch.where(total > 0, median, torch.full_like(median, float("nan"))).float()


def entropy_thresholds(medians: torch.Tensor, base_threshold: float = 0.001) -> torch.Tensor:
    """PLOP's per-class thresholds: ``max(median, base)``; ``base`` for unseen classes."""
    return torch.where(
        medians.isnan(), torch.full_like(medians, base_threshold), medians
    ).clamp_min(base_threshold)


def unlabeled_pixels(candidates: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool sets -> (B, H, W) bool: more than one class but not all (the pixels
    PLOP pseudo-labels and takes its entropy statistics from)."""
    size = candidates.sum(dim=1)
    return (size > 1) & (size < candidates.shape[1])


@torch.no_grad()
def pseudo_label_candidates(
    candidates: torch.Tensor,
    teacher_logits: torch.Tensor,
    thresholds: torch.Tensor,
    representatives: torch.Tensor,
    epsilon: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace unlabeled pixels' sets by PLOP pseudo-labels.

    Unlabeled pixels are those whose set holds more than one class but not all. Where the
    teacher's normalised entropy is below ``thresholds[k*]`` and the student class standing for
    k* is in the set, the set becomes that one class; elsewhere the pixel is ignored.

    Args:
        candidates: (B, C, H, W) bool.
        teacher_logits: (B, K, H, W).
        thresholds: (K,) entropy thresholds.
        representatives: (K,) long, the student class index of each teacher class.
        epsilon: None: the factor is the accepted share of each image's unlabeled pixels, 1
            where an image has none; a number: PLOP's ``accepted / (unlabeled + epsilon)``
            (PLOP ``train.py`` lines 281-289, with 1e-6), 0 where an image has none.

    Returns:
        new candidates (B, C, H, W) bool, and (B,) each image's loss factor.
    """
    num_classes = candidates.shape[1]
    unlabeled = unlabeled_pixels(candidates)
    probs = teacher_logits.float().softmax(dim=1)
    best = probs.argmax(dim=1)
    entropy = normalized_entropy(probs)
    student_class = representatives.to(best.device)[best]
    in_set = candidates.gather(1, student_class[:, None])[:, 0]
    accepted = unlabeled & in_set & (entropy < thresholds.to(entropy.device)[best])
    pseudo = torch.nn.functional.one_hot(student_class, num_classes).permute(0, 3, 1, 2).bool()
    rejected = unlabeled & ~accepted
    out = torch.where(accepted[:, None], pseudo, candidates)
    out = out | rejected[:, None]
    counted = unlabeled.flatten(1).sum(dim=1)
    if epsilon is not None:
        return out, accepted.flatten(1).sum(dim=1) / (counted + epsilon)
    factor = accepted.flatten(1).sum(dim=1) / counted.clamp_min(1)
    factor = torch.where(counted > 0, factor, torch.ones_like(factor))
    return out, factor
