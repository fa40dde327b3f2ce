"""Tests of PLOP's Local POD feature distillation."""

import math

import pytest
import torch
import torch.nn.functional as F

from incremental.losses import local_pod_embedding, local_pod_loss


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


class TestEmbedding:
    @pytest.mark.parametrize(
        "shape, scales", [((2, 3, 8, 16), (1, 2, 4)), ((1, 5, 4, 4), (1,)), ((3, 2, 12, 6), (1, 3))]
    )
    def test_shape_formula(self, gen, shape, scales):
        b, c, h, w = shape
        emb = local_pod_embedding(torch.randn(*shape, generator=gen), scales)
        assert emb.shape == (b, sum(s * s * c * (h // s + w // s) for s in scales))

    def test_hand_computed_single_scale(self):
        x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]
        emb = local_pod_embedding(x, scales=(1,))
        sq = x[0, 0] ** 2
        along_width = F.normalize(sq.mean(dim=0), dim=0)  # (1+9)/2, (4+16)/2
        along_height = F.normalize(sq.mean(dim=1), dim=0)  # (1+4)/2, (9+16)/2
        assert torch.allclose(emb[0], torch.cat([along_width, along_height]))

    def test_parts_normalised(self, gen):
        c, h, w = 3, 8, 8
        emb = local_pod_embedding(torch.randn(2, c, h, w, generator=gen), scales=(1, 2))
        # scale 1: width part (C*W) then height part (C*H); each of unit norm.
        assert torch.allclose(emb[:, : c * w].norm(dim=1), torch.ones(2))
        assert torch.allclose(emb[:, c * w : c * (w + h)].norm(dim=1), torch.ones(2))
        parts = 2 * (1 + 4)
        assert emb.norm(dim=1).pow(2).tolist() == pytest.approx([parts, parts], rel=1e-5)

    def test_not_4d(self):
        with pytest.raises(ValueError, match=r"features: expected \(B, C, H, W\), got \(3, 4, 4\)"):
            local_pod_embedding(torch.randn(3, 4, 4))


class TestLoss:
    def test_identical_is_zero(self, gen):
        feats = [torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 8, 4, 4, generator=gen)]
        loss = local_pod_loss(feats, [f.clone() for f in feats])
        assert loss.shape == () and loss.item() == 0.0

    def test_positive_otherwise(self, gen):
        s = [torch.randn(2, 4, 8, 8, generator=gen)]
        t = [torch.randn(2, 4, 8, 8, generator=gen)]
        assert local_pod_loss(s, t) > 0

    def test_scale_invariant(self, gen):
        s = [torch.randn(2, 4, 8, 8, generator=gen)]
        t = [torch.randn(2, 4, 8, 8, generator=gen)]
        assert torch.allclose(local_pod_loss(s, t), local_pod_loss([3 * s[0]], t), atol=1e-6)

    def test_mean_over_layers(self, gen):
        s = [torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 8, 4, 4, generator=gen)]
        t = [torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 8, 4, 4, generator=gen)]
        per_layer = [local_pod_loss([a], [b]) for a, b in zip(s, t, strict=True)]
        assert torch.allclose(local_pod_loss(s, t), sum(per_layer) / 2)
        e = local_pod_embedding(s[0]) - local_pod_embedding(t[0])
        assert torch.allclose(per_layer[0], e.norm(dim=1).mean())

    def test_teacher_not_differentiated(self, gen):
        s = torch.randn(2, 4, 8, 8, generator=gen, requires_grad=True)
        t = torch.randn(2, 4, 8, 8, generator=gen, requires_grad=True)
        local_pod_loss([s], [t]).backward()
        assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0

    def test_count_mismatch(self, gen):
        x = torch.randn(1, 2, 4, 4, generator=gen)
        with pytest.raises(ValueError, match="same non-zero number .* got 2 and 1"):
            local_pod_loss([x, x], [x])
        with pytest.raises(ValueError, match="got 0 and 0"):
            local_pod_loss([], [])

    def test_shape_mismatch(self, gen):
        x = torch.randn(1, 2, 4, 4, generator=gen)
        with pytest.raises(
            ValueError, match=r"layer 1: student features \(1, 2, 4, 4\) vs teacher \(1, 2, 4, 2\)"
        ):
            local_pod_loss([x, x], [x, x[..., :2]])

    def test_gradcheck(self, gen):
        s = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        t = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda x: local_pod_loss([x], [t], scales=(1, 2)), (s,))
        assert math.isfinite(local_pod_loss([s], [t]).item())
