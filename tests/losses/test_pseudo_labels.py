"""Tests of PLOP's entropy-thresholded pseudo-labels (with the histogram median fixed)."""

import pytest
import torch

from incremental.losses import (
    EntropyHistogram,
    entropy_thresholds,
    normalized_entropy,
    pseudo_label_candidates,
)

K = 4


def entropies_and_predictions(teacher_logits, mask):
    probs = teacher_logits.softmax(dim=1)
    return normalized_entropy(probs)[mask], probs.argmax(dim=1)[mask]


class TestEntropyHistogram:
    def test_smoke(self):
        hist = EntropyHistogram(K, num_bins=10)
        assert hist.counts.shape == (K, 10) and hist.counts.sum() == 0
        assert hist.medians().isnan().all()

    @pytest.mark.parametrize("num_bins", [20, 100])
    @pytest.mark.parametrize("scale", [0.5, 3.0])
    def test_medians_match_quantile(self, num_bins, scale):
        g = torch.Generator().manual_seed(num_bins)
        logits = scale * torch.randn(6, K, 16, 16, generator=g)
        logits[:, 0] += 1.0  # class 0 predicted more often
        mask = torch.rand(6, 16, 16, generator=g) < 0.8
        hist = EntropyHistogram(K, num_bins)
        hist.update(logits[:3], mask[:3])  # accumulates over batches
        hist.update(logits[3:], mask[3:])
        assert hist.counts.sum() == mask.sum()
        entropy, predicted = entropies_and_predictions(logits, mask)
        medians = hist.medians()
        assert medians.shape == (K,) and medians.dtype == torch.float32
        for k in range(K):
            values = entropy[predicted == k]
            assert len(values) > 10
            assert abs(medians[k] - torch.quantile(values, 0.5)) <= 1 / num_bins
            assert abs(medians[k] - torch.median(values)) <= 1 / num_bins

    def test_masked_pixels_not_counted(self):
        logits = torch.zeros(1, K, 2, 2)
        logits[0, 1] = 10.0
        mask = torch.tensor([[[True, False], [False, False]]])
        hist = EntropyHistogram(K, num_bins=10)
        hist.update(logits, mask)
        assert hist.counts.sum() == 1 and hist.counts[1].sum() == 1
        medians = hist.medians()
        assert medians[[0, 2, 3]].isnan().all() and 0 <= medians[1] <= 0.1

    def test_hand_computed_interpolation(self):
        hist = EntropyHistogram(2, num_bins=10)
        hist.counts[0, 2] = 4  # four values in [0.2, 0.3): median halfway -> 0.25
        hist.counts[1, 1] = 1
        hist.counts[1, 7] = 3  # 4 values, half = 2: 1 before bin 7, 1 of 3 inside -> 0.7 + 1/30
        medians = hist.medians()
        assert medians[0].item() == pytest.approx(0.25)
        assert medians[1].item() == pytest.approx(0.7 + 0.1 / 3)

    def test_medians_never_exceed_one(self):
        # Uniform teacher everywhere: every entropy is 1 (the last bin). PLOP's original median
        # added bin indices to the running count and gave thresholds far above 1.
        hist = EntropyHistogram(K, num_bins=100)
        hist.update(torch.zeros(2, K, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool))
        medians = hist.medians()
        assert medians[0] <= 1.0 and medians[0] > 0.98
        assert (entropy_thresholds(medians) <= 1.0).all()


class TestThresholds:
    def test_at_least_base_and_base_for_unseen(self):
        medians = torch.tensor([0.0005, 0.4, float("nan"), 1.0])
        th = entropy_thresholds(medians, base_threshold=0.001)
        assert th.tolist() == pytest.approx([0.001, 0.4, 0.001, 1.0])
        assert (th >= 0.001).all() and (th <= 1.0).all()

    def test_random_medians(self):
        g = torch.Generator().manual_seed(1)
        hist = EntropyHistogram(K, num_bins=50)
        hist.update(torch.randn(3, K, 8, 8, generator=g), torch.ones(3, 8, 8, dtype=torch.bool))
        th = entropy_thresholds(hist.medians(), base_threshold=0.2)
        assert (th >= 0.2).all() and (th <= 1.0).all() and not th.isnan().any()


class TestPseudoLabelCandidates:
    # Student: background, coat, car_other, bag, police_car (C = 5); teacher K = 3.
    REPRESENTATIVES = torch.tensor([0, 1, 2])

    @staticmethod
    def setup_batch():
        c = 5
        cand = torch.zeros(2, c, 1, 5, dtype=torch.bool)
        unlabeled = torch.tensor([True, True, True, False, True])  # all but police_car
        cand[0, :, 0, 0] = unlabeled  # teacher sure of coat -> {coat}
        cand[0, :, 0, 1] = unlabeled  # teacher unsure -> ignored (full set)
        cand[0, 3, 0, 2] = True  # labeled bag, teacher sure of coat -> untouched
        cand[0, :, 0, 3] = True  # ignored pixel -> untouched
        cand[0, :, 0, 4] = torch.tensor([True, False, True, True, True])  # coat excluded
        cand[1, 4] = True  # image 1: labeled police_car only, no unlabeled pixel
        sure_coat = torch.tensor([-5.0, 5.0, -5.0])
        unsure = torch.tensor([0.0, 0.1, 0.0])
        t = torch.stack([sure_coat, unsure, sure_coat, sure_coat, sure_coat], dim=1)
        teacher = torch.stack([t, t])[:, :, None, :]
        return cand, teacher

    def test_values(self):
        cand, teacher = self.setup_batch()
        out, factor = pseudo_label_candidates(
            cand, teacher, torch.full((3,), 0.5), self.REPRESENTATIVES
        )
        assert out.shape == cand.shape and out.dtype == torch.bool
        assert out[0, :, 0, 0].tolist() == [False, True, False, False, False]  # singleton coat
        assert out[0, :, 0, 1].all()  # unconfident unlabeled -> full set
        assert torch.equal(out[0, :, 0, 2], cand[0, :, 0, 2])  # labeled: untouched
        assert out[0, :, 0, 3].all()  # ignore stays ignore
        assert out[0, :, 0, 4].all()  # teacher's class outside the set -> ignored
        assert torch.equal(out[1], cand[1])
        # Image 0: 3 unlabeled pixels (0, 1, 4), one accepted; image 1 has none -> 1.
        assert factor.tolist() == pytest.approx([1 / 3, 1.0])

    def test_threshold_per_predicted_class(self):
        cand, teacher = self.setup_batch()
        entropy = normalized_entropy(teacher.softmax(dim=1))[0, 0, 0]
        # Threshold for coat just below the confident pixel's entropy: nothing accepted.
        th = torch.tensor([1.0, entropy.item() * 0.99, 1.0])
        out, factor = pseudo_label_candidates(cand, teacher, th, self.REPRESENTATIVES)
        assert out[0, :, 0, 0].all() and factor[0] == 0
        # A generous threshold for coat accepts pixel 0 but not pixel 1 (predicted coat too,
        # entropy near 1) unless the threshold passes that entropy as well.
        th = torch.tensor([1.0, 1.01, 1.0])
        out, factor = pseudo_label_candidates(cand, teacher, th, self.REPRESENTATIVES)
        assert out[0, :, 0, 1].tolist() == [False, True, False, False, False]
        assert factor[0].item() == pytest.approx(2 / 3)

    def test_representative_mapping(self):
        # Teacher class 2 (car) stands for student car_other (index 2) here; mapping it to
        # police_car (4) makes the pseudo-label police_car where allowed.
        cand = torch.ones(1, 5, 1, 1, dtype=torch.bool)
        cand[0, 3] = False
        teacher = torch.tensor([-5.0, -5.0, 5.0])[None, :, None, None]
        out, _ = pseudo_label_candidates(cand, teacher, torch.ones(3), torch.tensor([0, 1, 4]))
        assert out[0, :, 0, 0].tolist() == [False, False, False, False, True]
