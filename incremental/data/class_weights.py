"""Class weights for the cross-entropy from the training labels (median-frequency balancing)."""

from __future__ import annotations

import logging

import torch

from incremental.data.core import SegmentationSource
from incremental.labels import CandidateSetTable


def class_weights(
    sources: list[SegmentationSource], table: CandidateSetTable, max_images: int = 2000
) -> torch.Tensor:
    """Median-frequency class weights from the pixels whose candidate set is one class.

    ``w_c = median(f) / f_c`` over classes seen as singletons (the lower median for an even
    count); unseen classes get weight 1.
    At most ``max_images`` images per source are read.
    """
    counts = torch.zeros(len(table.classes), dtype=torch.float64)
    for row, source in enumerate(sources):
        for i in range(min(len(source), max_images)):
            _, mask = source.load(i)
            sets = table.sets[row][torch.from_numpy(mask).long()]  # (H, W, C)
            single = sets.sum(dim=-1) == 1
            counts += sets[single].sum(dim=0).double()
    seen = counts > 0
    weights = torch.ones_like(counts)
    if bool(seen.any()):
        freq = counts / counts.sum()
        weights[seen] = freq[seen].median() / freq[seen]
    log = logging.getLogger(__name__)
    if int(seen.sum()) < 2:
        # Partial labels: on new images without replay only the new class is a single-class
        # label (every other pixel is a set), and one frequency balances against nothing.
        names = [table.classes[c] for c in torch.nonzero(seen).flatten().tolist()] or "none"
        log.warning(
            "class_weights: inverse_frequency weighs nothing here: the training labels name "
            "%s as their only single-class label(s), so every weight is 1.0 (replay old "
            "images, or drop the setting)",
            names,
        )
    log.info("class weights: %s", weights.tolist())
    return weights.float()
