"""Tests of set distillation ``-Σ_k q_k log Σ_{c∈T(k)} p_c`` and its label-conditioned form."""

import math

import pytest
import torch
import torch.nn.functional as F

from incremental.labels import Split, TeacherMap, Transition
from incremental.losses import SetDistillation, set_distillation, set_log_probs, teacher_probs

B, K, C, H, W = 2, 3, 5, 3, 4


def transition() -> Transition:
    # Student: background, coat, car_other, bag, police_car.
    return Transition(
        ("background", "coat", "car"),
        new_classes=("bag",),
        splits=(Split.of("car", ["police_car"]),),
    )


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def logits(gen, *shape, dtype=torch.float32, requires_grad=False):
    return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(requires_grad)


class TestSmokeAndShapes:
    @pytest.mark.parametrize("reduction, shape", [("mean", ()), ("sum", ()), ("none", (B, H, W))])
    def test_shapes(self, gen, reduction, shape):
        t = TeacherMap(transition()).matrix
        loss = set_distillation(
            logits(gen, B, C, H, W), logits(gen, B, K, H, W), t, reduction=reduction
        )
        assert loss.shape == shape and torch.isfinite(loss).all()

    def test_set_log_probs_hand(self):
        p = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25])
        log_p = p.log()[None, :, None, None]
        out = set_log_probs(log_p, TeacherMap(transition()).matrix)
        assert out.shape == (1, 3, 1, 1)
        expected = [math.log(0.1 + 0.15), math.log(0.2), math.log(0.3 + 0.25)]
        assert out.flatten().tolist() == pytest.approx(expected, rel=1e-5)

    def test_teacher_not_differentiated(self, gen):
        s = logits(gen, B, C, H, W, requires_grad=True)
        t = logits(gen, B, K, H, W, requires_grad=True)
        set_distillation(s, t, TeacherMap(transition()).matrix).backward()
        assert t.grad is None and s.grad is not None

    def test_module_matches_function(self, gen):
        s, t = logits(gen, B, C, H, W), logits(gen, B, K, H, W)
        sets = TeacherMap(transition()).matrix
        cand = torch.rand(B, C, H, W, generator=gen) < 0.5
        cand[:, 0] = True
        plain = SetDistillation(sets, temperature=2.0)
        cond = SetDistillation(sets, temperature=2.0, label_conditioned=True)
        assert torch.allclose(plain(s, t, cand), set_distillation(s, t, sets, 2.0))
        assert torch.allclose(cond(s, t, cand), set_distillation(s, t, sets, 2.0, cand))
        assert not torch.allclose(cond(s, t, cand), plain(s, t, cand))


class TestExceptions:
    def test_teacher_sets_shape(self, gen):
        with pytest.raises(
            ValueError, match=r"teacher_sets: expected a \(3, 5\) bool tensor, got \(3, 4\)"
        ):
            set_distillation(
                logits(gen, B, C, H, W), logits(gen, B, K, H, W), torch.ones(3, 4, dtype=torch.bool)
            )

    def test_teacher_sets_dtype(self, gen):
        with pytest.raises(
            ValueError, match=r"teacher_sets: expected .* got \(3, 5\) torch.float32"
        ):
            set_distillation(logits(gen, B, C, H, W), logits(gen, B, K, H, W), torch.ones(3, 5))

    def test_teacher_class_without_set(self, gen):
        sets = TeacherMap(transition()).matrix
        sets[1] = False
        with pytest.raises(ValueError, match=r"teacher class\(es\) \[1\] map to no student class"):
            set_distillation(logits(gen, B, C, H, W), logits(gen, B, K, H, W), sets)

    def test_teacher_logits_shape(self, gen):
        with pytest.raises(
            ValueError, match=r"teacher_logits: expected \(B=2, K, H=3, W=4\), got \(2, 3, 3, 5\)"
        ):
            set_distillation(
                logits(gen, B, C, H, W), logits(gen, B, K, H, 5), TeacherMap(transition()).matrix
            )

    def test_student_dim(self, gen):
        with pytest.raises(ValueError, match=r"student_logits: expected \(B, C, H, W\)"):
            set_distillation(
                logits(gen, C, H, W), logits(gen, B, K, H, W), TeacherMap(transition()).matrix
            )

    def test_candidates(self, gen):
        with pytest.raises(ValueError, match="candidates: expected a bool tensor"):
            set_distillation(
                logits(gen, B, C, H, W),
                logits(gen, B, K, H, W),
                TeacherMap(transition()).matrix,
                candidates=torch.ones(B, C, H, W),
            )

    def test_reduction(self, gen):
        with pytest.raises(ValueError, match="reduction must be one of"):
            set_distillation(
                logits(gen, B, C, H, W),
                logits(gen, B, K, H, W),
                TeacherMap(transition()).matrix,
                reduction="max",
            )

    def test_conditioned_needs_sets(self, gen):
        with pytest.raises(ValueError, match="need teacher_sets"):
            teacher_probs(
                logits(gen, B, K, H, W), candidates=torch.ones(B, C, H, W, dtype=torch.bool)
            )


class TestValues:
    @pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
    def test_identity_is_soft_cross_entropy(self, gen, temperature):
        s, t = logits(gen, B, K, H, W), logits(gen, B, K, H, W)
        loss = set_distillation(s, t, torch.eye(K, dtype=torch.bool), temperature)
        expected = -(F.softmax(t / temperature, dim=1) * F.log_softmax(s, dim=1)).sum(1).mean()
        assert torch.allclose(loss, expected, atol=1e-6)

    def test_merged_set_hand_computed(self):
        # Student p = (0.1, 0.2, 0.3, 0.15, 0.25); teacher q = (0.5, 0.3, 0.2);
        # T = {bg, bag}, {coat}, {car_other, police_car}.
        p = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25])
        q = torch.tensor([0.5, 0.3, 0.2])
        s = p.log()[None, :, None, None]
        t = q.log()[None, :, None, None]
        loss = set_distillation(s, t, TeacherMap(transition()).matrix)
        expected = -(0.5 * math.log(0.25) + 0.3 * math.log(0.2) + 0.2 * math.log(0.55))
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        # The teacher temperature sharpens q: q ∝ q^(1/T).
        q2 = q**2 / (q**2).sum()
        loss_t = set_distillation(s, t, TeacherMap(transition()).matrix, temperature=0.5)
        expected_t = -(q2 * torch.tensor([0.25, 0.2, 0.55]).log()).sum()
        assert loss_t.item() == pytest.approx(expected_t.item(), rel=1e-5)

    def test_label_conditioned_hand_computed(self):
        p = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25])
        q = torch.tensor([0.5, 0.3, 0.2])
        s = p.log()[None, :, None, None].repeat(1, 1, 1, 3)
        t = q.log()[None, :, None, None].repeat(1, 1, 1, 3)
        cand = torch.tensor(
            [
                [False, False, False, True, False],  # labeled bag: only T(bg) meets it
                [True, True, False, True, True],  # not car_other: all three teacher classes
                [False, True, True, False, False],  # coat or car_other: drops background
            ]
        ).T[None, :, None, :]
        sets = TeacherMap(transition()).matrix
        loss = set_distillation(s, t, sets, candidates=cand, reduction="none").flatten()
        log_sets = torch.tensor([0.25, 0.2, 0.55]).log()
        expected = [
            -math.log(0.25),
            -(q * log_sets).sum().item(),
            -(torch.tensor([0.3, 0.2]) / 0.5 * log_sets[1:]).sum().item(),
        ]
        assert loss.tolist() == pytest.approx(expected, rel=1e-5)
        q_cond = teacher_probs(t, candidates=cand, teacher_sets=sets)
        assert q_cond[0, :, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.0])
        assert q_cond[0, :, 0, 2].tolist() == pytest.approx([0.0, 0.6, 0.4])

    def test_label_conditioned_full_sets_change_nothing(self, gen):
        s, t = logits(gen, B, C, H, W), logits(gen, B, K, H, W)
        sets = TeacherMap(transition()).matrix
        full = torch.ones(B, C, H, W, dtype=torch.bool)
        assert torch.allclose(
            set_distillation(s, t, sets, candidates=full), set_distillation(s, t, sets), atol=1e-6
        )

    def test_pixel_mask_mean(self, gen):
        s, t = logits(gen, B, C, H, W), logits(gen, B, K, H, W)
        sets = TeacherMap(transition()).matrix
        mask = torch.rand(B, H, W, generator=gen) < 0.5
        per_pixel = set_distillation(s, t, sets, reduction="none")
        assert torch.allclose(set_distillation(s, t, sets, pixel_mask=mask), per_pixel[mask].mean())
        assert torch.allclose(
            set_distillation(s, t, sets, pixel_mask=mask, reduction="sum"), per_pixel[mask].sum()
        )

    @pytest.mark.parametrize("label_conditioned", [False, True])
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_all_masked_gives_zero_with_zero_grad(self, gen, label_conditioned, reduction):
        s = logits(gen, B, C, H, W, requires_grad=True)
        t = logits(gen, B, K, H, W)
        cand = torch.ones(B, C, H, W, dtype=torch.bool) if label_conditioned else None
        mask = torch.zeros(B, H, W, dtype=torch.bool)
        loss = set_distillation(
            s, t, TeacherMap(transition()).matrix, 2.0, cand, mask, reduction=reduction
        )
        assert torch.isfinite(loss).all() and (loss == 0).all()
        assert loss.grad_fn is not None
        loss.sum().backward()
        assert torch.equal(s.grad, torch.zeros_like(s))

    def test_masked_pixels_change_nothing(self, gen):
        t = logits(gen, B, K, H, W)
        mask = torch.rand(B, H, W, generator=gen) < 0.5
        s1 = logits(gen, B, C, H, W)
        s2 = torch.where(mask[:, None], s1, 30 * logits(gen, B, C, H, W))
        grads = []
        for s in (s1, s2):
            s = s.clone().requires_grad_(True)
            loss = set_distillation(s, t, TeacherMap(transition()).matrix, pixel_mask=mask)
            loss.backward()
            grads.append((loss.detach(), s.grad))
        assert torch.allclose(grads[0][0], grads[1][0])
        assert torch.allclose(grads[0][1], grads[1][1])

    def test_mass_preserving_student_has_teacher_entropy(self, gen):
        # If the student's set probabilities equal the teacher's, the loss is the teacher's
        # entropy (its minimum over students).
        t = logits(gen, B, K, H, W)
        sets = TeacherMap(transition()).matrix
        # Student logits: each member of T(k) gets z_k - log |T(k)|.
        s = t.permute(0, 2, 3, 1) @ sets.float() - (
            sets.float() * sets.sum(1, keepdim=True).log()
        ).sum(0)
        s = s.permute(0, 3, 1, 2)
        q = t.softmax(dim=1)
        entropy = -(q * q.log()).sum(dim=1).mean()
        assert torch.allclose(set_distillation(s, t, sets), entropy, atol=1e-5)
        assert set_distillation(s + logits(gen, B, C, H, W), t, sets) > entropy


class TestGradcheck:
    @pytest.mark.parametrize(
        "temperature, conditioned, masked",
        [(1.0, False, False), (2.0, False, False), (0.5, True, False), (1.0, True, True)],
        ids=["plain", "temperature", "label_conditioned", "conditioned_masked"],
    )
    def test_gradcheck(self, gen, temperature, conditioned, masked):
        s = logits(gen, B, C, H, W, dtype=torch.float64, requires_grad=True)
        t = logits(gen, B, K, H, W, dtype=torch.float64)
        sets = TeacherMap(transition()).matrix
        cand = None
        if conditioned:
            cand = torch.rand(B, C, H, W, generator=gen) < 0.4
            cand[:, 0] |= ~cand.any(dim=1)
        mask = torch.rand(B, H, W, generator=gen) < 0.5 if masked else None
        assert torch.autograd.gradcheck(
            lambda x: set_distillation(x, t, sets, temperature, cand, mask), (s,)
        )
