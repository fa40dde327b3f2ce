"""Tests of head expansion: mass preservation, random init, and the teacher left untouched."""

import copy
import math

import pytest
import torch

from incremental.labels import Split, TeacherMap, Transition
from incremental.models import create_model, expand_head, find_classifier

OLD = ("background", "coat", "car")
TRANSITIONS = {
    "new_class": Transition(OLD, new_classes=("bag", "hat")),
    "split": Transition(OLD, splits=(Split.of("car", ["police_car", "taxi"]),)),
    "both": Transition(OLD, new_classes=("bag",), splits=(Split.of("car", ["police_car"]),)),
}
ARCHS = {
    "tiny-unet": {"name": "tiny-unet"},
    "fpn": {
        "arch": "FPN",
        "encoder": "tu-test_resnet",
        "decoder_pyramid_channels": 32,
        "decoder_segmentation_channels": 32,
    },
}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def teacher(request):
    torch.manual_seed(0)
    model = create_model(num_classes=len(OLD), **ARCHS[request.param]).eval()
    # Random-init heads have near-zero biases; make them matter.
    with torch.no_grad():
        find_classifier(model)[1].bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    return model


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("split_aware", [True, False])
@pytest.mark.parametrize("case", sorted(TRANSITIONS))
def test_mass_preserving(teacher, images, case, split_aware):
    transition = TRANSITIONS[case]
    teacher_map = TeacherMap(transition, split_aware)
    student = expand_head(teacher, teacher_map).eval()
    with torch.no_grad():
        p_teacher = teacher(images).softmax(dim=1)
        p_student = student(images).softmax(dim=1)
    assert p_student.shape[1] == transition.num_student_classes
    matrix = teacher_map.matrix.to(p_student.dtype)
    p_sets = torch.einsum("kc,bchw->bkhw", matrix, p_student)
    assert (p_sets - p_teacher).abs().max() <= 1e-5
    # Not trivially true: the created classes do take a share of their parent's mass.
    created = [transition.student_classes.index(c) for c in transition.created_classes]
    assert p_student[:, created].min() > 1e-4


def test_mass_preserving_bias_values(teacher):
    t = TRANSITIONS["both"]  # background -> {background, bag}; car -> {car_other, police_car}
    student = expand_head(teacher, TeacherMap(t))
    _, old = find_classifier(teacher)
    _, new = find_classifier(student, t.num_student_classes)
    b = old.bias
    expected = [
        b[0] - math.log(2),
        b[1],
        b[2] - math.log(2),
        b[0] - math.log(2),
        b[2] - math.log(2),
    ]
    assert torch.allclose(new.bias, torch.stack(expected))
    for c, k in enumerate([0, 1, 2, 0, 2]):
        assert torch.equal(new.weight[c], old.weight[k])
    assert new.weight.requires_grad and new.bias.requires_grad


def test_not_split_aware_rows(teacher):
    # MiB view: police_car is initialised from background, car_other keeps car's row as is.
    t = TRANSITIONS["both"]
    student = expand_head(teacher, TeacherMap(t, split_aware=False))
    _, old = find_classifier(teacher)
    _, new = find_classifier(student, t.num_student_classes)
    assert torch.equal(new.weight[4], old.weight[0])
    assert torch.allclose(new.bias[4], old.bias[0] - math.log(3))
    assert torch.allclose(new.bias[2], old.bias[2])


def test_random_init(teacher):
    t = TRANSITIONS["both"]
    torch.manual_seed(3)
    student = expand_head(teacher, TeacherMap(t), init="random")
    _, old = find_classifier(teacher)
    _, new = find_classifier(student, t.num_student_classes)
    # Old classes (their representatives) keep their rows and biases, unshifted.
    for c in range(3):
        assert torch.equal(new.weight[c], old.weight[c])
        assert torch.equal(new.bias[c], old.bias[c])
    # Created classes: bag (3) and police_car (4) are not copies of any old row.
    for c in (3, 4):
        for k in range(3):
            assert not torch.allclose(new.weight[c], old.weight[k])
    assert not torch.allclose(new.weight[3], new.weight[4])


def test_teacher_not_modified(teacher, images):
    before = state(teacher)
    with torch.no_grad():
        out_before = teacher(images)
    student = expand_head(teacher, TeacherMap(TRANSITIONS["both"]))
    after = state(teacher)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert find_classifier(teacher)[1].out_channels == 3
    assert find_classifier(student)[1] is not find_classifier(teacher)[1]
    # Shared nothing: training the student's encoder leaves the teacher's alone.
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
        assert torch.equal(teacher(images), out_before)


def test_explicit_classifier_name(teacher):
    student = expand_head(
        teacher, TeacherMap(TRANSITIONS["new_class"]), classifier="segmentation_head.0"
    )
    assert student.segmentation_head[0].out_channels == 5


def test_errors(teacher):
    with pytest.raises(ValueError, match=r"init must be one of .* got 'zeros'"):
        expand_head(teacher, TeacherMap(TRANSITIONS["new_class"]), init="zeros")
    with pytest.raises(ValueError, match=r"classifier 'encoder' is not a Conv2d with 3 outputs"):
        expand_head(teacher, TeacherMap(TRANSITIONS["new_class"]), classifier="encoder")
    wrong = Transition(("background", "coat"), new_classes=("bag",))
    with pytest.raises(ValueError, match="no Conv2d classifier with 2 output channels"):
        expand_head(teacher, TeacherMap(wrong))


def test_student_of_a_frozen_eval_teacher_trains(teacher):
    # A loaded or cached old model is frozen and in eval mode; its student must not inherit
    # either (batch norm in eval mode would silently never update its statistics).
    frozen = copy.deepcopy(teacher).eval().requires_grad_(False)
    student = expand_head(frozen, TeacherMap(TRANSITIONS["both"]))
    assert all(m.training for m in student.modules())
    assert all(p.requires_grad for p in student.parameters())
    assert not any(m.training for m in frozen.modules())


@pytest.mark.parametrize("share", [0.5, 0.9])
def test_remainder_share_keeps_the_parent_mass(teacher, images, share):
    """The remainder starts with ``share`` of its parent's probability, the child with the rest;
    every set's probability still equals the teacher's class's."""
    teacher_map = TeacherMap(TRANSITIONS["both"])
    student = expand_head(teacher, teacher_map, remainder_share=share).eval()
    with torch.no_grad():
        p_teacher = teacher(images).softmax(dim=1)
        p_student = student(images).softmax(dim=1)
    p_sets = torch.einsum("kc,bchw->bkhw", teacher_map.matrix.to(p_student.dtype), p_student)
    assert (p_sets - p_teacher).abs().max() <= 1e-5
    classes = TRANSITIONS["both"].student_classes
    car = p_teacher[:, OLD.index("car")]
    remainder = p_student[:, classes.index("car_other")]
    torch.testing.assert_close(remainder, share * car, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="remainder_share must be in"):
        expand_head(teacher, teacher_map, remainder_share=1.0)
