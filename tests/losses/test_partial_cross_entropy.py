"""Tests of the partial-label cross-entropy ``-log Σ_{c∈S} p_c`` (plain, class-weighted, focal)."""

import math

import pytest
import torch
import torch.nn.functional as F

from incremental.losses import PartialCrossEntropy, candidate_set_nll, partial_cross_entropy

B, C, H, W = 2, 4, 3, 5


def one_hot(labels: torch.Tensor, num_classes: int = C) -> torch.Tensor:
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).bool()


def sets_with_ignore(labels: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """One-hot sets of ``labels`` with the pixels of ``ignore`` mapped to the full set."""
    return one_hot(torch.where(ignore, 0, labels)) | ignore[:, None]


def random_sets(generator: torch.Generator, dtype=torch.bool) -> torch.Tensor:
    """Random non-empty candidate sets, some singletons, some partial, some full."""
    sets = torch.rand(B, C, H, W, generator=generator) < 0.5
    sets[:, 0] |= ~sets.any(dim=1)
    sets[0, :, 0, 0] = True  # at least one full set
    sets[1, :, 0, 0] = torch.tensor([False, False, True, False])  # and one singleton
    return sets


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


VARIANTS = {
    "plain": {},
    "weighted": {"weight": torch.tensor([0.5, 2.0, 1.0, 3.0])},
    "focal": {"gamma": 2.0},
    "focal_half": {"gamma": 0.5},
    "weighted_focal": {"weight": torch.tensor([0.5, 2.0, 1.0, 3.0]), "gamma": 1.5},
}


class TestSmokeAndShapes:
    @pytest.mark.parametrize("reduction, shape", [("mean", ()), ("sum", ()), ("none", (B, H, W))])
    def test_shapes(self, gen, reduction, shape):
        z = torch.randn(B, C, H, W, generator=gen)
        loss = partial_cross_entropy(z, random_sets(gen), reduction=reduction)
        assert loss.shape == shape and torch.isfinite(loss).all()

    def test_nll_non_negative_zero_on_full(self, gen):
        z = torch.randn(B, C, H, W, generator=gen)
        sets = random_sets(gen)
        nll = candidate_set_nll(z, sets)
        assert nll.shape == (B, H, W)
        assert (nll >= 0).all()
        assert nll[0, 0, 0].abs() < 1e-6  # full set (rounding only; the loss masks it)
        assert (nll[~sets.all(dim=1)] > 0).all()

    def test_module_matches_function(self, gen):
        z = torch.randn(B, C, H, W, generator=gen)
        sets = random_sets(gen)
        w = torch.tensor([1.0, 2.0, 3.0, 4.0])
        module = PartialCrossEntropy(weight=w, gamma=1.0, reduction="sum")
        assert torch.equal(module.weight, w)
        assert torch.allclose(module(z, sets), partial_cross_entropy(z, sets, w, 1.0, "sum"))


class TestExceptions:
    def test_logits_dim(self):
        with pytest.raises(ValueError, match=r"logits: expected \(B, C, H, W\), got \(4, 3, 3\)"):
            partial_cross_entropy(torch.randn(4, 3, 3), torch.ones(4, 3, 3, dtype=torch.bool))

    def test_logits_dtype(self):
        z = torch.zeros(1, C, 2, 2, dtype=torch.long)
        with pytest.raises(ValueError, match="logits: expected a floating-point tensor"):
            partial_cross_entropy(z, torch.ones(1, C, 2, 2, dtype=torch.bool))

    def test_candidates_shape(self):
        with pytest.raises(ValueError, match=r"candidates: expected .* \(1, 4, 2, 2\), got \(1, 3"):
            partial_cross_entropy(torch.randn(1, C, 2, 2), torch.ones(1, 3, 2, 2, dtype=torch.bool))

    def test_candidates_dtype(self):
        with pytest.raises(ValueError, match="candidates: expected a bool tensor, got torch.int64"):
            partial_cross_entropy(torch.randn(1, C, 2, 2), torch.ones(1, C, 2, 2, dtype=torch.long))

    def test_reduction(self):
        sets = torch.ones(1, C, 2, 2, dtype=torch.bool)
        with pytest.raises(ValueError, match="reduction must be one of .* got 'avg'"):
            partial_cross_entropy(torch.randn(1, C, 2, 2), sets, reduction="avg")
        with pytest.raises(ValueError, match="got 'avg'"):
            PartialCrossEntropy(reduction="avg")

    def test_weight_shape(self):
        sets = torch.ones(1, C, 2, 2, dtype=torch.bool)
        with pytest.raises(ValueError, match=r"weight: expected \(4,\), got \(3,\)"):
            partial_cross_entropy(torch.randn(1, C, 2, 2), sets, weight=torch.ones(3))


class TestValues:
    def test_hand_computed(self):
        # p = (1, 2, 3) / 6 at every pixel; S = {1, 2} -> p_S = 5/6.
        z = torch.log(torch.tensor([1.0, 2.0, 3.0]))[None, :, None, None].expand(1, 3, 1, 2)
        sets = torch.stack([torch.tensor([False, True, True]), torch.tensor([True, False, False])])
        sets = sets.T[None, :, None, :]  # pixel 0: {1, 2}; pixel 1: {0}
        loss = partial_cross_entropy(z, sets, reduction="none")
        expected = torch.tensor([[[-math.log(5 / 6), -math.log(1 / 6)]]])
        assert torch.allclose(loss, expected, atol=1e-6)
        assert torch.allclose(partial_cross_entropy(z, sets), expected.mean(), atol=1e-6)

    def test_hand_computed_focal(self):
        z = torch.log(torch.tensor([1.0, 2.0, 3.0]))[None, :, None, None]
        sets = torch.tensor([False, True, True])[None, :, None, None]
        loss = partial_cross_entropy(z, sets, gamma=2.0)
        assert loss.item() == pytest.approx((1 / 6) ** 2 * -math.log(5 / 6), rel=1e-5)

    def test_hand_computed_weighted(self):
        # w(S) = (w1 p1 + w2 p2) / p_S = (2·2 + 4·3) / 5 = 3.2; mean divides by it again.
        z = torch.log(torch.tensor([1.0, 2.0, 3.0]))[None, :, None, None].repeat(1, 1, 1, 2)
        sets = torch.tensor([[False, True], [True, False], [True, False]])[None, :, None, :]
        w = torch.tensor([10.0, 2.0, 4.0])
        loss = partial_cross_entropy(z, sets, weight=w, reduction="none")
        expected = [-3.2 * math.log(5 / 6), -10.0 * math.log(1 / 6)]
        assert loss.flatten().tolist() == pytest.approx(expected, rel=1e-5)
        mean = partial_cross_entropy(z, sets, weight=w)
        assert mean.item() == pytest.approx(sum(expected) / 13.2, rel=1e-5)

    def test_full_set_is_zero(self, gen):
        z = torch.randn(B, C, H, W, generator=gen)
        assert (
            partial_cross_entropy(z, torch.ones(B, C, H, W, dtype=torch.bool), reduction="none")
            .abs()
            .max()
            == 0
        )

    def test_singleton_equals_cross_entropy(self, gen):
        z = torch.randn(B, C, H, W, generator=gen)
        y = torch.randint(0, C, (B, H, W), generator=gen)
        for reduction in ("mean", "sum", "none"):
            got = partial_cross_entropy(z, one_hot(y), reduction=reduction)
            assert torch.allclose(got, F.cross_entropy(z, y, reduction=reduction), atol=1e-6)

    def test_singleton_weighted_equals_cross_entropy(self, gen):
        z = torch.randn(B, C, H, W, generator=gen)
        y = torch.randint(0, C, (B, H, W), generator=gen)
        w = torch.tensor([0.5, 2.0, 1.0, 3.0])
        for reduction in ("mean", "sum", "none"):
            got = partial_cross_entropy(z, one_hot(y), weight=w, reduction=reduction)
            want = F.cross_entropy(z, y, weight=w, reduction=reduction)
            assert torch.allclose(got, want, atol=1e-6)

    @pytest.mark.parametrize("weighted", [False, True])
    def test_ignore_as_full_set_equals_ignore_index(self, gen, weighted):
        z = torch.randn(B, C, H, W, generator=gen)
        y = torch.randint(0, C, (B, H, W), generator=gen)
        ignore = torch.rand(B, H, W, generator=gen) < 0.4
        assert ignore.any() and not ignore.all()
        w = torch.tensor([0.5, 2.0, 1.0, 3.0]) if weighted else None
        sets = sets_with_ignore(y, ignore)
        for reduction in ("mean", "sum", "none"):
            got = partial_cross_entropy(z, sets, weight=w, reduction=reduction)
            want = F.cross_entropy(
                z, torch.where(ignore, 255, y), weight=w, ignore_index=255, reduction=reduction
            )
            assert torch.allclose(got, want, atol=1e-6)

    def test_focal_singleton_matches_formula(self, gen):
        z = torch.randn(B, C, H, W, generator=gen)
        y = torch.randint(0, C, (B, H, W), generator=gen)
        ce = F.cross_entropy(z, y, reduction="none")
        want = ((1 - torch.exp(-ce)) ** 2 * ce).mean()
        assert torch.allclose(partial_cross_entropy(z, one_hot(y), gamma=2.0), want, atol=1e-6)

    def test_merging_classes_is_marginalisation(self, gen):
        # Set {0, 1} over 4 classes equals plain CE of the 3-class model with 0, 1 merged.
        z = torch.randn(B, C, H, W, generator=gen)
        sets = torch.zeros(B, C, H, W, dtype=torch.bool)
        sets[:, :2] = True
        merged = torch.cat([z[:, :2].logsumexp(dim=1, keepdim=True), z[:, 2:]], dim=1)
        want = F.cross_entropy(merged, torch.zeros(B, H, W, dtype=torch.long))
        assert torch.allclose(partial_cross_entropy(z, sets), want, atol=1e-6)


class TestIgnored:
    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_all_ignored_gives_zero_with_zero_grad(self, variant, reduction):
        z = torch.randn(B, C, H, W, requires_grad=True)
        full = torch.ones(B, C, H, W, dtype=torch.bool)
        loss = partial_cross_entropy(z, full, reduction=reduction, **VARIANTS[variant])
        assert torch.isfinite(loss).all() and (loss == 0).all()
        assert loss.grad_fn is not None
        loss.sum().backward()
        assert z.grad is not None and torch.equal(z.grad, torch.zeros_like(z))

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_ignored_logits_change_nothing(self, gen, variant):
        y = torch.randint(0, C, (B, H, W), generator=gen)
        ignore = torch.rand(B, H, W, generator=gen) < 0.4
        ignore[0, 1, 1] = False
        sets = sets_with_ignore(y, ignore)
        # Partial sets too: the property must hold beside non-singleton informative pixels.
        sets[0, :2, 1, 1] = True
        sets[0, 2:, 1, 1] = False
        z1 = torch.randn(B, C, H, W, generator=gen)
        z2 = torch.where(ignore[:, None], 50 * torch.randn(B, C, H, W, generator=gen), z1)
        assert not torch.equal(z1, z2)
        results = []
        for z in (z1, z2):
            z = z.clone().requires_grad_(True)
            loss = partial_cross_entropy(z, sets, **VARIANTS[variant])
            loss.backward()
            assert torch.isfinite(z.grad).all()
            results.append((loss.detach(), z.grad))
        assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
        assert torch.allclose(results[0][1], results[1][1], atol=1e-7)
        assert torch.equal(results[1][1] * ignore[:, None], torch.zeros_like(z1))


class TestGradcheck:
    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    @pytest.mark.parametrize("reduction", ["mean", "none"])
    def test_gradcheck(self, gen, variant, reduction):
        """float64 gradcheck on singleton, partial and full sets.

        A set's class weight ``w(S)`` is deliberately not differentiated, so the weighted
        variants use a weight that is constant inside every partial set drawn here (classes 1
        and 2 share a weight; partial sets are {1, 2}): then ``w(S)`` is a constant and the
        finite differences must match the analytic gradient.
        """
        kwargs = dict(VARIANTS[variant])
        sets = random_sets(gen)
        if "weight" in kwargs:
            kwargs["weight"] = torch.tensor([0.5, 2.0, 2.0, 3.0], dtype=torch.float64)
            partial = (sets.sum(dim=1) > 1) & ~sets.all(dim=1)
            sets = torch.where(
                partial[:, None],
                torch.tensor([False, True, True, False])[None, :, None, None],
                sets,
            )
            assert partial.any()
        z = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda x: partial_cross_entropy(x, sets, reduction=reduction, **kwargs), (z,)
        )
