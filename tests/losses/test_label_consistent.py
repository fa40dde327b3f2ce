"""Label-consistent set distillation: formula, reductions to set distillation and MiB's UNKD,
gradients (hand-written and exact paths), and the within-set self-training transform."""

from __future__ import annotations

import pytest
import torch

from incremental.labels import Split, TeacherMap, Transition
from incremental.losses import (
    consistent_sets,
    label_consistent_distillation,
    mib_teacher_sets,
    set_distillation,
    unbiased_distillation,
)
from incremental.strategies import (
    ParentSetsDistilledOnly,
    PartialCE,
    SelfTrainWithinSets,
    SetKD,
    StepContext,
)

TRANSITION = Transition(
    ("background", "coat", "car"), new_classes=("bag",), splits=(Split.of("car", ["police_car"]),)
)
T = TeacherMap(TRANSITION).matrix  # student: background, coat, car_other, bag, police_car


def _sets(gen: torch.Generator, b: int = 2, h: int = 4, w: int = 4) -> torch.Tensor:
    """Full sets, "anything but bag" (unlabeled on a bag image) and {car_other, police_car}
    (an old "car"), and singletons."""
    kind = torch.randint(0, 4, (b, 1, h, w), generator=gen)
    sets = torch.ones(b, 5, h, w, dtype=torch.bool)
    sets[:, 3:4] &= kind != 0
    pair = torch.zeros_like(sets)
    pair[:, [2, 4]] = True
    sets = torch.where(kind == 1, pair, sets)
    single = torch.zeros_like(sets)
    single[:, 1] = True
    return torch.where(kind == 2, single, sets)


def _by_hand(z, t, sets, singletons=False):
    """-Σ_k q̃_k log Σ_{c∈T(k)∩S'} p_c, one pixel at a time (with ``singletons``, q̃ keeps at a
    singleton {c} only the k with c ∈ T(k), whose mass goes to all of T(k))."""
    p, q = z.softmax(dim=1), t.softmax(dim=1)
    s = consistent_sets(sets)
    teacher_side = consistent_sets(sets, singletons=True) if singletons else s
    out = torch.zeros(z.shape[0], z.shape[2], z.shape[3], dtype=z.dtype)
    for b in range(z.shape[0]):
        for i in range(z.shape[2]):
            for j in range(z.shape[3]):
                allowed = [k for k in range(T.shape[0]) if (T[k] & teacher_side[b, :, i, j]).any()]
                norm = sum(q[b, k, i, j] for k in allowed)
                for k in allowed:
                    mass = (p[b, :, i, j] * (T[k] & s[b, :, i, j])).sum()
                    out[b, i, j] -= q[b, k, i, j] / norm * mass.log()
    return out


@pytest.mark.parametrize("singletons", [False, True])
def test_hand_computed(singletons):
    gen = torch.Generator().manual_seed(0)
    z, t = torch.randn(2, 5, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    sets = _sets(gen)
    ours = label_consistent_distillation(z, t, T, sets, reduction="none", singletons=singletons)
    torch.testing.assert_close(ours, _by_hand(z, t, sets, singletons))


def test_singletons_stop_teaching_a_labeled_new_class_the_teachers_class():
    """A pixel labeled bag that the teacher calls "coat": plain conditioning still teaches
    "coat" there (against the label); with ``singletons`` only the background's mass is kept,
    and it goes to {background, bag}, so the gradient raises bag, not coat."""
    z = torch.zeros(1, 5, 1, 1, requires_grad=True)
    t = torch.tensor([0.0, 4.0, 0.0]).view(1, 3, 1, 1)  # the teacher: coat
    bag = torch.zeros(1, 5, 1, 1, dtype=torch.bool)
    bag[0, 3] = True
    grads = {}
    for singletons in (False, True):
        (grad,) = torch.autograd.grad(
            label_consistent_distillation(z, t, T, bag, singletons=singletons), z
        )
        grads[singletons] = grad.flatten()
    coat, bag_class = 1, 3
    assert grads[False][coat] < 0  # descending raises coat: against the label
    assert grads[True][coat] > 0 and grads[True][bag_class] < 0
    # A (C,) mask conditions the singleton labels of the classes it holds only.
    for chosen, expected in ((3, grads[True]), (1, grads[False])):
        mask = torch.zeros(5, dtype=torch.bool)
        mask[chosen] = True
        (grad,) = torch.autograd.grad(
            label_consistent_distillation(z, t, T, bag, singletons=mask), z
        )
        torch.testing.assert_close(grad.flatten(), expected)
    # Where no pixel is a singleton, the option changes nothing.
    pair = torch.zeros(1, 5, 1, 1, dtype=torch.bool)
    pair[0, [2, 4]] = True
    torch.testing.assert_close(
        label_consistent_distillation(z, t, T, pair, singletons=True),
        label_consistent_distillation(z, t, T, pair),
    )


def test_consistent_sets_keep_proper_sets_only():
    sets = _sets(torch.Generator().manual_seed(1))
    out = consistent_sets(sets)
    size = sets.sum(dim=1)
    proper = (size > 1) & (size < 5)
    assert torch.equal(
        out[proper.unsqueeze(1).expand_as(out)], sets[proper.unsqueeze(1).expand_as(sets)]
    )
    assert out.permute(0, 2, 3, 1)[~proper].all()  # singletons and full sets: every class


def test_full_sets_give_set_distillation_and_mib():
    gen = torch.Generator().manual_seed(2)
    z, t = torch.randn(2, 5, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    full = torch.ones(2, 5, 4, 4, dtype=torch.bool)
    torch.testing.assert_close(
        label_consistent_distillation(z, t, T, full), set_distillation(z, t, T)
    )
    mib = mib_teacher_sets(3, 5)
    torch.testing.assert_close(
        label_consistent_distillation(z, t, mib, full), 3 * unbiased_distillation(z, t)
    )


def test_it_teaches_only_inside_the_label():
    """On an old "car" pixel and on an unlabeled pixel of a bag image, no mass goes to a class
    the label excludes: making the excluded class likelier leaves the loss unchanged."""
    z = torch.zeros(1, 5, 1, 2)
    t = torch.tensor([0.0, 0.0, 3.0]).view(1, 3, 1, 1).expand(1, 3, 1, 2).clone()
    sets = torch.ones(1, 5, 1, 2, dtype=torch.bool)
    sets[0, 3, 0, 0] = False  # anything but bag
    sets[0, [0, 1, 3], 0, 1] = False  # {car_other, police_car}
    base = label_consistent_distillation(z, t, T, sets, reduction="none")
    bagger = z.clone()
    bagger[0, 3, 0, 0] = 5.0  # more bag where the label says "no bag"
    moved = label_consistent_distillation(bagger, t, T, sets, reduction="none")
    assert moved[0, 0, 0] > base[0, 0, 0]  # bag now takes mass the background set needed
    assert base[0, 0, 1] > 0


@pytest.mark.parametrize("singletons", [False, True])
@pytest.mark.parametrize("underflow", [False, True])
def test_gradcheck(underflow, singletons):
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(2, 5, 3, 3, generator=gen, dtype=torch.float64)
    if underflow:
        z[:, 4] = -200.0  # police_car's probability underflows: the exact path
    t = torch.randn(2, 3, 3, 3, generator=gen, dtype=torch.float64)
    sets = _sets(gen, h=3, w=3)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: label_consistent_distillation(x, t, T, sets, singletons=singletons), (z,)
    )


def test_self_training_narrows_confident_family_pixels_only():
    """An old "car" pixel ({car_other, police_car}) where the student is sure of police_car
    becomes {police_car}; an unsure one, and pixels with other sets, keep theirs."""
    logits = torch.zeros(1, 5, 1, 3)
    logits[0, 4, 0, 0] = 4.0  # sure: police_car
    logits[0, 4, 0, 2] = 4.0  # sure too, but its set is not a family
    sets = torch.zeros(1, 5, 1, 3, dtype=torch.bool)
    sets[0, [2, 4], 0, :2] = True  # {car_other, police_car}
    sets[0, :, 0, 2] = True  # every class
    step = StepContext(
        logits, sets, ~sets.all(dim=1), T, torch.tensor([0, 1, 2]), label_candidates=sets
    )
    out = SelfTrainWithinSets(0.9)(step).candidates
    assert out[0, :, 0, 0].nonzero().flatten().tolist() == [4]
    assert torch.equal(out[0, :, 0, 1:], sets[0, :, 0, 1:])


def test_parent_sets_leave_the_cross_entropy_only():
    """An old "car" ({car_other, police_car}) stops counting in the cross-entropy, which then
    equals the cross-entropy over the other informative pixels alone; an unlabeled pixel with
    "anything but bag" and a singleton keep theirs, and the distillation does not change."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 4, 4, generator=gen)
    teacher = torch.randn(2, 3, 4, 4, generator=gen)
    sets = _sets(gen)
    parent = (sets == torch.tensor([0, 0, 1, 0, 1]).bool()[None, :, None, None]).all(dim=1)
    assert parent.any() and (~parent & ~sets.all(dim=1)).any()
    step = StepContext(
        logits, sets, ~sets.all(dim=1), T, torch.tensor([0, 1, 2]), teacher_logits=teacher
    )
    out = ParentSetsDistilledOnly()(step)
    assert torch.equal(out.informative, step.informative & ~parent)
    assert torch.equal(out.candidates, step.candidates)
    kept = ~parent & ~sets.all(dim=1)
    nll = -(logits.softmax(dim=1) * sets).sum(dim=1).log()
    assert torch.allclose(PartialCE()(out), nll[kept].mean())
    assert not torch.allclose(PartialCE()(out), PartialCE()(step))
    kd = SetKD(conditioning="label_consistent")
    assert torch.equal(kd(out), kd(step))


def test_self_trained_parent_pixels_stay_in_the_cross_entropy():
    """With self-training before it, an old "car" pixel the student is sure of (narrowed to
    {police_car}) says something about the split and stays informative; an unsure one (still
    {car_other, police_car}) leaves the cross-entropy."""
    logits = torch.zeros(1, 5, 1, 3)
    logits[0, 4, 0, 0] = 4.0  # sure: police_car
    sets = torch.zeros(1, 5, 1, 3, dtype=torch.bool)
    sets[0, [2, 4], 0, :2] = True  # {car_other, police_car}: sure at 0, unsure at 1
    sets[0, 0, 0, 2] = True  # a singleton
    step = StepContext(
        logits, sets, ~sets.all(dim=1), T, torch.tensor([0, 1, 2]), label_candidates=sets
    )
    out = ParentSetsDistilledOnly()(SelfTrainWithinSets(0.9)(step))
    assert out.informative[0, 0].tolist() == [True, False, True]
    assert out.candidates[0, :, 0, 0].nonzero().flatten().tolist() == [4]


def test_self_training_from_the_averaged_student_reads_its_probabilities():
    """With ``ema_decay``, the averaged student's probabilities decide: sure of police_car
    there, the pixel narrows though the student itself is unsure; without its logits the
    step is refused, naming the setting."""
    logits = torch.zeros(1, 5, 1, 2)
    ema_logits = torch.zeros(1, 5, 1, 2)
    ema_logits[0, 4, 0, 0] = 4.0
    sets = torch.zeros(1, 5, 1, 2, dtype=torch.bool)
    sets[0, [2, 4]] = True  # {car_other, police_car}
    step = StepContext(
        logits, sets, ~sets.all(dim=1), T, torch.tensor([0, 1, 2]), ema_logits=ema_logits
    )
    out = SelfTrainWithinSets(0.9, ema_decay=0.99)(step).candidates
    assert out[0, :, 0, 0].nonzero().flatten().tolist() == [4]
    assert torch.equal(out[0, :, 0, 1], sets[0, :, 0, 1])
    assert torch.equal(SelfTrainWithinSets(0.9)(step).candidates, sets)  # the student: unsure
    with pytest.raises(ValueError, match="self_training_ema needs the averaged student"):
        SelfTrainWithinSets(0.9, ema_decay=0.99)(step.replace(ema_logits=None))
    with pytest.raises(ValueError, match="self_training_ema must be in"):
        SelfTrainWithinSets(0.9, ema_decay=1.0)
