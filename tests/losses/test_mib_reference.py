"""MiB's unbiased losses against values computed by MiB's own code (tests/data, see its README)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from incremental.losses import (
    mib_candidates,
    mib_teacher_sets,
    partial_cross_entropy,
    unbiased_cross_entropy,
    unbiased_distillation,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "mib_reference_losses.npz"
CASES = range(4)
ATOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA) as npz:
        return {k: torch.from_numpy(npz[k]) for k in npz.files}


def case(reference, i):
    return {k.split("_", 1)[1]: v for k, v in reference.items() if k.startswith(f"case{i}_")}


@pytest.mark.parametrize("i", CASES)
def test_unbiased_cross_entropy(reference, i):
    c = case(reference, i)
    n = int(c["num_old_classes"])
    mean = unbiased_cross_entropy(c["logits"], c["labels"], n)
    none = unbiased_cross_entropy(c["logits"], c["labels"], n, reduction="none")
    assert none.shape == c["labels"].shape
    assert torch.allclose(mean, c["unce_mean"], atol=ATOL)
    assert torch.allclose(none, c["unce_none"], atol=ATOL)


@pytest.mark.parametrize("i", CASES)
def test_unbiased_distillation(reference, i):
    c = case(reference, i)
    assert torch.allclose(
        unbiased_distillation(c["logits"], c["old_logits"]), c["unkd_mean"], atol=ATOL
    )
    none = unbiased_distillation(c["logits"], c["old_logits"], reduction="none")
    assert torch.allclose(none, c["unkd_none"], atol=ATOL)
    alpha2 = unbiased_distillation(c["logits"], c["old_logits"], alpha=2.0)
    assert torch.allclose(alpha2, c["unkd_alpha2_mean"], atol=ATOL)
    assert not torch.allclose(alpha2, c["unkd_mean"], atol=ATOL)  # alpha matters


@pytest.mark.parametrize("i", CASES)
def test_focal(reference, i):
    """MiB's FocalLoss(gamma=2) is plain-label focal CE with 255 ignored, but its mean runs over
    *all* pixels, ignored ones included (they contribute 0). So it equals our partial focal
    cross-entropy on one-hot sets, with ignored pixels as full sets, summed and divided by the
    total number of pixels -- not our ``mean``, which counts informative pixels only."""
    c = case(reference, i)
    labels, logits = c["labels"], c["logits"]
    ignore = labels == 255
    assert ignore.any()  # the cases do exercise the difference
    sets = F.one_hot(torch.where(ignore, 0, labels), logits.shape[1]).permute(0, 3, 1, 2).bool()
    sets |= ignore[:, None]
    total = partial_cross_entropy(logits, sets, gamma=2.0, reduction="sum")
    assert torch.allclose(total / labels.numel(), c["focal_gamma2_mean"], atol=ATOL)
    mean = partial_cross_entropy(logits, sets, gamma=2.0)
    assert not torch.allclose(mean, c["focal_gamma2_mean"], atol=ATOL)


def test_mib_candidates_hand():
    labels = torch.tensor([[[0, 1, 2, 3, 255]]])  # 2 old classes (bg, 1), 2 new (2, 3)
    sets = mib_candidates(labels, num_old_classes=2, num_classes=4)
    assert sets.shape == (1, 4, 1, 5)
    assert sets[0, :, 0].T.int().tolist() == [
        [1, 1, 0, 0],  # old label: background or an old class
        [1, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
        [1, 1, 1, 1],  # ignore
    ]


def test_mib_teacher_sets_hand():
    assert mib_teacher_sets(3, 5).int().tolist() == [
        [1, 0, 0, 1, 1],
        [0, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
    ]
