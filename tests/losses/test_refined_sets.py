"""Tests of teacher-refined candidate sets and the normalised entropy."""

import math

import pytest
import torch

from incremental.labels import Split, TeacherMap, Transition
from incremental.losses import normalized_entropy, refine_candidates

# Student: background, coat, car_other, bag, police_car; teacher: background, coat, car.
T = TeacherMap(
    Transition(
        ("background", "coat", "car"),
        new_classes=("bag",),
        splits=(Split.of("car", ["police_car"]),),
    )
).matrix


def sets(*rows):
    """(1, C, 1, N) candidate sets from N lists of student class indices."""
    out = torch.zeros(1, 5, 1, len(rows), dtype=torch.bool)
    for i, members in enumerate(rows):
        out[0, list(members), 0, i] = True
    return out


def teacher(*probs):
    """(1, K, 1, N) teacher logits with the given per-pixel probabilities."""
    return torch.tensor(probs).T.log()[None, :, None, :]


def members(candidates, pixel):
    return candidates[0, :, 0, pixel].nonzero().flatten().tolist()


class TestNormalizedEntropy:
    def test_uniform_is_one_and_one_hot_is_zero(self):
        probs = torch.stack([torch.full((6,), 1 / 6), torch.eye(6)[2]], dim=0)[..., None, None]
        h = normalized_entropy(probs)
        assert h.shape == (2, 1, 1)
        # A mean over classes (PLOP's code) would give 1/6 for the uniform distribution.
        assert h[0].item() == pytest.approx(1.0, abs=1e-6)
        assert h[1].item() == 0.0

    def test_hand_computed(self):
        probs = torch.tensor([0.5, 0.5, 0.0, 0.0])[None, :, None, None]
        assert normalized_entropy(probs).item() == pytest.approx(math.log(2) / math.log(4))

    def test_single_class(self):
        assert torch.equal(normalized_entropy(torch.ones(2, 1, 3, 3)), torch.zeros(2, 3, 3))

    def test_range(self):
        probs = torch.randn(4, 7, 5, 5, generator=torch.Generator().manual_seed(0)).softmax(1)
        h = normalized_entropy(probs)
        assert h.shape == (4, 5, 5) and (h >= 0).all() and (h <= 1 + 1e-6).all()


class TestRefine:
    def test_confident_teacher_shrinks_unlabeled(self):
        # Unlabeled in police-car images: everything but police_car. Teacher: "car" (0.9).
        cand = sets([0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3])
        t = teacher([0.05, 0.05, 0.9], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05])
        out = refine_candidates(cand, t, T, threshold=0.7)
        assert out.shape == cand.shape and out.dtype == torch.bool
        assert members(out, 0) == [2]  # S ∩ T(car) = {car_other}
        assert members(out, 1) == [0, 3]  # S ∩ T(background) = {background, bag}
        assert members(out, 2) == [1]  # S ∩ T(coat) = {coat}

    def test_unsure_teacher_keeps_set(self):
        cand = sets([0, 1, 2, 3], [0, 1, 2, 3])
        t = teacher([0.3, 0.3, 0.4], [0.05, 0.3, 0.65])
        out = refine_candidates(cand, t, T, threshold=0.7)
        assert torch.equal(out, cand)
        # The same pixel 1 is refined once the threshold admits 0.65.
        assert members(refine_candidates(cand, t, T, threshold=0.6), 1) == [2]

    def test_empty_intersection_keeps_set(self):
        # Labeled bag; teacher certain of "coat": {bag} ∩ {coat} is empty.
        cand = sets([3], [2, 4])
        t = teacher([0.0, 0.99, 0.01], [0.99, 0.0, 0.01])
        assert torch.equal(refine_candidates(cand, t, T, threshold=0.7), cand)

    def test_entropy_criterion(self):
        cand = sets([0, 1, 2, 3], [0, 1, 2, 3])
        t = teacher([0.02, 0.02, 0.96], [0.2, 0.2, 0.6])
        h = normalized_entropy(t.softmax(dim=1))[0, 0]
        assert h[0] < 0.3 < h[1]
        out = refine_candidates(cand, t, T, threshold=0.3, criterion="entropy")
        assert members(out, 0) == [2]
        assert members(out, 1) == [0, 1, 2, 3]
        # Confidence 0.96 / 0.6 with threshold 0.3 would refine both: the criterion matters.
        assert members(refine_candidates(cand, t, T, threshold=0.3), 1) == [2]

    def test_bad_criterion(self):
        with pytest.raises(
            ValueError, match="criterion must be 'confidence' or 'entropy', got 'margin'"
        ):
            refine_candidates(sets([0]), teacher([1.0, 0.0, 0.0]), T, criterion="margin")

    def test_batch_and_no_grad(self):
        g = torch.Generator().manual_seed(0)
        cand = torch.rand(2, 5, 4, 4, generator=g) < 0.6
        cand[:, 0] = True
        t = (5 * torch.randn(2, 3, 4, 4, generator=g)).requires_grad_(True)
        out = refine_candidates(cand, t, T, threshold=0.5)
        assert out.shape == cand.shape and not out.requires_grad
        assert not (out & ~cand).any()  # refined sets are subsets
        assert out.any(dim=1).all()  # and never empty
