"""Pixel-to-prototype contrast within a split family: the formula against an explicit loop, its
limits, what counts as an anchor, its gradient, and the strategy term that wraps it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from incremental.labels import Split, TeacherMap, Transition
from incremental.losses import family_contrast, family_sets
from incremental.losses.family_contrast import member_prototypes
from incremental.strategies import FamilyContrast, PartialCE, StepContext, create_strategy

TRANSITION = Transition(
    ("background", "coat", "car"), new_classes=("bag",), splits=(Split.of("car", ["police_car"]),)
)
T = TeacherMap(TRANSITION).matrix  # student: background, coat, car_other, bag, police_car
CAR_OTHER, BAG, POLICE_CAR = 2, 3, 4


def _singletons(labels: torch.Tensor, num_classes: int = 5) -> torch.Tensor:
    """(B, H, W) class indices, -1 = every class -> (B, C, H, W) bool candidate sets."""
    sets = F.one_hot(labels.clamp_min(0), num_classes).permute(0, 3, 1, 2).bool()
    return sets | (labels < 0)[:, None]


def _loop(features, candidates, tau, prototype_features=None):
    """The formula, one family, one anchor at a time; the prototypes from
    ``prototype_features`` (default: ``features``) are constants."""
    z = F.normalize(features.double(), dim=1)
    zp = F.normalize(
        (features if prototype_features is None else prototype_features).detach().double(), dim=1
    )
    total = []
    for family in family_sets(T):
        anchors, targets = {}, {}
        for c in family.nonzero().flatten().tolist():
            where = ((candidates.sum(dim=1) == 1) & candidates[:, c]).nonzero().tolist()
            if where:
                anchors[c] = [z[b, :, i, j] for b, i, j in where]
                targets[c] = [zp[b, :, i, j] for b, i, j in where]
        if len(anchors) < 2:
            continue
        protos = {c: F.normalize(torch.stack(v).mean(0), dim=0) for c, v in targets.items()}
        per_member = []
        for c, vectors in anchors.items():
            nll = []
            for v in vectors:
                scores = torch.stack([v @ p / tau for p in protos.values()])
                nll.append(-(scores[list(protos).index(c)] - torch.logsumexp(scores, 0)))
            per_member.append(torch.stack(nll).mean())
        total.append(torch.stack(per_member).mean())
    return torch.stack(total).mean()


def test_families_are_the_larger_sets_of_T():
    assert [f.nonzero().flatten().tolist() for f in family_sets(T)] == [
        [0, BAG],
        [CAR_OTHER, POLICE_CAR],
    ]


def test_it_is_the_formula():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 6, 4, 5, generator=gen)
    labels = torch.randint(-1, 5, (2, 4, 5), generator=gen)
    candidates = _singletons(labels)
    expected = _loop(features, candidates, 0.2)
    assert torch.allclose(family_contrast(features, candidates, T, 0.2).double(), expected)


def test_limits_separated_and_merged():
    """Child and remainder on orthogonal features: the loss vanishes as τ shrinks; on equal
    features it is log 2 (two members, no preference)."""
    candidates = _singletons(torch.tensor([[[CAR_OTHER, POLICE_CAR, CAR_OTHER]]]))
    apart = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])[None, :, None, :]
    assert family_contrast(apart, candidates, T, 0.01) < 1e-6
    same = torch.ones(1, 2, 1, 3)
    assert torch.isclose(family_contrast(same, candidates, T, 0.1), torch.tensor(math.log(2)))


def test_only_single_member_sets_of_a_family_with_two_members_present_count():
    """Other classes, multi-class sets and a family with only one member present add nothing;
    with nothing to contrast the loss is 0 and still back-propagates."""
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(1, 4, 2, 4, generator=gen, requires_grad=True)
    only_child = _singletons(torch.tensor([[[POLICE_CAR, 1, -1, POLICE_CAR], [1, 1, -1, -1]]]))
    only_child[0, :, 1, 3] = False
    only_child[0, [CAR_OTHER, POLICE_CAR], 1, 3] = True  # an old "car": two members
    loss = family_contrast(features, only_child, T)
    assert loss == 0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))

    both = only_child.clone()
    both[0, :, 1, 3] = False
    both[0, CAR_OTHER, 1, 3] = True  # now a refined remainder pixel: an anchor
    moved = features.detach().clone()
    moved[0, :, 0, 1:3] += 10.0  # non-members and every-class pixels
    assert torch.equal(family_contrast(features, both, T), family_contrast(moved, both, T))
    assert family_contrast(features, both, T) > 0


def test_members_weigh_equally():
    """Ten copies of a remainder anchor weigh as one: the mean over members comes first."""
    features = torch.tensor([[1.0, 0.2], [0.3, 1.0]])[None, :, None, :]
    one = _singletons(torch.tensor([[[POLICE_CAR, CAR_OTHER]]]))
    many_features = torch.cat([features[..., :1], features[..., 1:].expand(1, 2, 1, 10)], dim=-1)
    many = _singletons(torch.tensor([[[POLICE_CAR] + [CAR_OTHER] * 10]]))
    assert torch.isclose(family_contrast(features, one, T), family_contrast(many_features, many, T))


def test_features_at_a_lower_resolution_take_the_labels_nearest():
    """Features at half the labels' size read the label at the top left of each 2x2 block."""
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(-1, 5, (1, 4, 4), generator=gen)
    features = torch.randn(1, 3, 2, 2, generator=gen)
    assert torch.equal(
        family_contrast(features, _singletons(labels), T),
        family_contrast(features, _singletons(labels[:, ::2, ::2]), T),
    )


def test_gradient_pulls_child_and_remainder_apart():
    """A few gradient steps on the features lower the cosine between the two members' means."""
    gen = torch.Generator().manual_seed(3)
    labels = torch.tensor([[[POLICE_CAR, POLICE_CAR, CAR_OTHER, CAR_OTHER, CAR_OTHER]]])
    candidates = _singletons(labels)
    features = torch.ones(1, 3, 1, 5) + 0.1 * torch.randn(1, 3, 1, 5, generator=gen)
    features.requires_grad_(True)

    def cosine():
        z = F.normalize(features.detach(), dim=1)[0, :, 0]
        return F.cosine_similarity(z[:, :2].mean(1), z[:, 2:].mean(1), dim=0)

    before = cosine()
    optimizer = torch.optim.SGD([features], lr=0.5)
    for _ in range(20):
        optimizer.zero_grad()
        family_contrast(features, candidates, T, 0.1).backward()
        optimizer.step()
    assert cosine() < before - 0.1


def test_gradient_holds_the_prototypes_constant():
    """The gradient is the numerical one of the formula with the prototypes held where they
    are: they are targets, and no gradient flows through them."""
    gen = torch.Generator().manual_seed(4)
    features = torch.randn(2, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    candidates = _singletons(torch.randint(-1, 5, (2, 3, 3), generator=gen))
    fixed = features.detach().clone()
    assert torch.autograd.gradcheck(lambda x: _loop(x, candidates, 0.5, fixed), (features,))
    (ours,) = torch.autograd.grad(family_contrast(features, candidates, T, 0.5), features)
    (loop,) = torch.autograd.grad(_loop(features, candidates, 0.5, fixed), features)
    assert torch.allclose(ours, loop)


def test_half_precision_features():
    """Under mixed precision the similarities are fp32 (τ = 0.1 divides their rounding
    error), and a batch with nothing to contrast gives 0, not the NaN of an fp16 sum that
    overflows times 0."""
    gen = torch.Generator().manual_seed(6)
    features = torch.randn(2, 4, 8, 8, generator=gen)
    candidates = _singletons(torch.randint(-1, 5, (2, 8, 8), generator=gen))
    exact = family_contrast(features, candidates, T)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = family_contrast(features.bfloat16(), candidates, T)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, family_contrast(features.bfloat16().float(), candidates, T))
    assert torch.allclose(mixed, exact, atol=0.05)
    loud = torch.full((1, 4, 64, 64), 100.0, dtype=torch.float16, requires_grad=True)
    nothing = _singletons(torch.full((1, 64, 64), 1))  # only "coat": no family member
    loss = family_contrast(loud, nothing, T)
    assert loss == 0 and not torch.isnan(loss)
    loss.backward()
    assert torch.equal(loud.grad, torch.zeros_like(loud))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        family_contrast(torch.zeros(1, 2, 1, 1), _singletons(torch.zeros(1, 1, 1).long()), T, 0)
    with pytest.raises(ValueError, match="2 feature maps for 1 labels"):
        family_contrast(torch.zeros(2, 2, 1, 1), _singletons(torch.zeros(1, 1, 1).long()), T)
    with pytest.raises(ValueError, match="contrast weight must be > 0"):
        FamilyContrast(0.0)
    with pytest.raises(ValueError, match="needs the student's feature maps"):
        candidates = _singletons(torch.zeros(1, 1, 1).long())
        FamilyContrast()(
            StepContext(torch.zeros(1, 5, 1, 1), candidates, candidates.any(1), T, torch.arange(3))
        )


def test_the_strategy_setting_adds_the_term_on_the_decoder_output():
    strategy = create_strategy("candidate-sets", {"contrast": 0.3, "contrast_temperature": 0.2})
    assert strategy.terms[-1] == FamilyContrast(0.3, 0.2)
    assert strategy.needs_features and strategy.feature_layers == "stages"
    assert not create_strategy("candidate-sets").needs_features
    no_teacher = create_strategy(
        "candidate-sets", {"contrast": 0.3, "distillation": "none", "refine": False}
    )
    assert not no_teacher.uses_teacher and no_teacher.terms == (PartialCE(), FamilyContrast(0.3))
    gen = torch.Generator().manual_seed(5)
    decoded = torch.randn(1, 4, 2, 3, generator=gen)
    candidates = _singletons(torch.tensor([[[POLICE_CAR, CAR_OTHER, 0], [BAG, 0, -1]]]))
    step = StepContext(
        torch.zeros(1, 5, 2, 3),
        candidates,
        candidates.sum(1) < 5,
        T,
        torch.arange(3),
        student_features=[torch.randn(1, 8, 1, 1), decoded],
    )
    assert torch.isclose(
        FamilyContrast(0.3, 0.2)(step), 0.3 * family_contrast(decoded, candidates, T, 0.2)
    )


def test_self_trained_parent_pixels_become_anchors():
    """Replay's combination (`self_training` with `contrast`): the transform runs first, so an
    old image's parent pixel ({car_other, police_car}) on which the student is confident
    within the set (90 % police_car) is an anchor of police_car; an unsure one (55 %) is not."""
    parent = torch.zeros(5, dtype=torch.bool)
    parent[[CAR_OTHER, POLICE_CAR]] = True
    labels = _singletons(torch.tensor([[[POLICE_CAR, CAR_OTHER, 0, 0]]]))
    labels[0, :, 0, 2] = parent  # confident
    labels[0, :, 0, 3] = parent  # unsure
    logits = torch.zeros(1, 5, 1, 4)
    logits[0, POLICE_CAR, 0, 2] = math.log(9.0)  # 9:1 within the set
    logits[0, POLICE_CAR, 0, 3] = math.log(55 / 45)
    features = torch.randn(1, 6, 1, 4, generator=torch.Generator().manual_seed(3))
    step = StepContext(
        logits, labels, labels.sum(1) < 5, T, torch.arange(3), label_candidates=labels,
        student_features=[features],
    )  # fmt: skip
    settings = {"contrast": 1.0, "distillation": "none", "refine": False}
    combined = create_strategy("candidate-sets", {**settings, "self_training": 0.8})
    alone = create_strategy("candidate-sets", settings)
    expected = labels.clone()
    expected[0, :, 0, 2] = F.one_hot(torch.tensor(POLICE_CAR), 5).bool()
    assert torch.isclose(
        combined.loss_terms(step)["contrast"], family_contrast(features, expected, T)
    )
    assert torch.isclose(alone.loss_terms(step)["contrast"], family_contrast(features, labels, T))
    assert not torch.isclose(
        family_contrast(features, expected, T), family_contrast(features, labels, T)
    )


def test_several_prototypes_find_a_remainder_made_of_two_things():
    """A remainder of two kinds (sandals along e1, boots along e2, as many of each) and a
    child along e3: one prototype sits between the kinds, two find them, and each remainder
    anchor then matches its own kind exactly: -log(e^{1/τ} / (e^{1/τ} + e^{0})) per anchor."""
    e = torch.eye(3)
    remainder = torch.stack([e[0], e[0], e[1], e[1]])
    one = member_prototypes(remainder, 1)
    assert torch.allclose(one, F.normalize(remainder.mean(0), dim=0)[None])
    two = member_prototypes(remainder, 2)
    assert torch.allclose(two[two.argmax(dim=1).argsort()], e[:2])
    assert member_prototypes(remainder, 9).shape == (4, 3)  # at most one per anchor
    assert member_prototypes(remainder[:1], 2).shape == (1, 3)
    # Features (1, 3, 1, 6): four remainder pixels, two child pixels.
    features = torch.cat([remainder, e[2:].repeat(2, 1)]).T[None, :, None, :]
    candidates = _singletons(torch.tensor([[[CAR_OTHER] * 4 + [POLICE_CAR] * 2]]))
    tau = 0.5
    child_and_own_kind = math.log1p(math.exp(-1 / tau))
    assert torch.isclose(
        family_contrast(features, candidates, T, tau, prototypes=2),
        torch.tensor(child_and_own_kind),
    )
    # With one prototype a remainder anchor matches its mean at cos 45°, so the loss is higher.
    remainder_one = math.log1p(math.exp((0 - 2**-0.5) / tau))
    assert torch.isclose(
        family_contrast(features, candidates, T, tau),
        torch.tensor((remainder_one + child_and_own_kind) / 2),
    )


def test_several_prototypes_hold_the_prototypes_constant():
    """With m prototypes the gradient is the loop's with the prototypes as constants: each
    anchor's score for a member is its best prototype's."""
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[[CAR_OTHER, POLICE_CAR, CAR_OTHER]] * 3, [[POLICE_CAR, 0, -1]] * 3])
    candidates = _singletons(labels)
    family_contrast(features, candidates, T, 0.3, prototypes=3).backward()
    z = F.normalize(features.detach(), dim=1).permute(0, 2, 3, 1)
    anchors = [z[labels == c] for c in (CAR_OTHER, POLICE_CAR)]
    centres = [member_prototypes(a, 3) for a in anchors]
    x = features.detach().clone().requires_grad_(True)
    zx = F.normalize(x, dim=1).permute(0, 2, 3, 1)
    per_member = []
    for j, c in enumerate((CAR_OTHER, POLICE_CAR)):
        a = zx[labels == c]
        scores = torch.stack([(a @ m.T).amax(1) for m in centres], dim=1) / 0.3
        per_member.append(F.cross_entropy(scores, torch.full((len(a),), j)))
    torch.stack(per_member).mean().backward()
    assert torch.allclose(features.grad, x.grad)


def test_prototype_settings_are_checked():
    with pytest.raises(ValueError, match="prototypes must be >= 1"):
        family_contrast(torch.zeros(1, 2, 1, 1), _singletons(torch.zeros(1, 1, 1).long()), T,
                        prototypes=0)  # fmt: skip
    with pytest.raises(ValueError, match="contrast_prototypes must be an integer >= 1, got 1.5"):
        FamilyContrast(0.5, prototypes=1.5)
    with pytest.raises(ValueError, match="set contrast"):
        create_strategy("candidate-sets", {"contrast_prototypes": 2})
    strategy = create_strategy("candidate-sets", {"contrast": 0.5, "contrast_prototypes": 2})
    assert strategy.terms[-1] == FamilyContrast(0.5, 0.1, 2)
