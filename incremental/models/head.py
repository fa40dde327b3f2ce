"""Find a model's final classifier and expand it for a transition.

Mass-preserving expansion (DESIGN §2): a student class hidden under old class P starts as a copy
of P's classifier row, and P's k student classes all get bias ``b_P - log k``. Since
``k · exp(z_P - log k) = exp(z_P)``, the student's probability of every set T(P) equals the
teacher's probability of P exactly at step start (MiB's initialisation is the background case).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from incremental.labels.teacher_map import TeacherMap

INITS = ("mass_preserving", "random")


def find_classifier(model: nn.Module, num_classes: int | None = None) -> tuple[str, nn.Conv2d]:
    """The last ``Conv2d`` of ``model`` (with ``num_classes`` outputs when given).

    Returns:
        its qualified name and the module.
    """
    found: tuple[str, nn.Conv2d] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and (
            num_classes is None or module.out_channels == num_classes
        ):
            found = (name, module)
    if found is None:
        what = f" with {num_classes} output channels" if num_classes is not None else ""
        raise ValueError(f"{type(model).__name__}: no Conv2d classifier{what} found")
    return found


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def replace_classifier(model: nn.Module, name: str, num_classes: int) -> nn.Conv2d:
    """Put a fresh ``Conv2d`` with ``num_classes`` outputs (default init) in place of the
    classifier ``name`` of ``model``, with its geometry, device and dtype; returns it."""
    old = model.get_submodule(name)
    new = nn.Conv2d(
        old.in_channels,
        num_classes,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
        old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    _set_submodule(model, name, new)
    return new


@torch.no_grad()
def expand_head(
    model: nn.Module,
    teacher_map: TeacherMap,
    *,
    init: str = "mass_preserving",
    classifier: str | None = None,
    remainder_share: float | None = None,
) -> nn.Module:
    """A copy of the teacher ``model`` whose classifier outputs the student's classes.

    Args:
        model: the teacher, with ``transition.num_old_classes`` outputs; not modified.
        teacher_map: the step's T (``StepLabels.teacher_map``, or
            ``TeacherMap(transition, split_aware)``): where each created class comes from.
        init: ``"mass_preserving"``, or ``"random"`` (old classes keep their rows, created
            classes get the layer's default random init; naive fine-tuning).
        classifier: the classifier's qualified name, if it cannot be found automatically.
        remainder_share: for a split parent P, the share π of P's probability its remainder
            starts with (the children share ``1 - π`` equally): biases ``b_P + log π`` and
            ``b_P + log((1 - π) / n)``, so the set's probability is still P's exactly. None:
            every member of a set gets an equal share (``b_P - log k``).
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if remainder_share is not None and not 0.0 < remainder_share < 1.0:
        raise ValueError(f"remainder_share must be in (0, 1), got {remainder_share}")
    transition = teacher_map.transition
    student = copy.deepcopy(model)
    # The teacher is usually frozen and in eval mode by now (a loaded or tested model); the
    # student trains, whatever the copy inherited: gradients on, batch-norm statistics updated
    # (Lightning leaves the modes it finds at the start of fit as they are).
    student.requires_grad_(True)
    student.train()
    if classifier is None:
        name, old = find_classifier(student, transition.num_old_classes)
    else:
        name, old = classifier, student.get_submodule(classifier)
        if not isinstance(old, nn.Conv2d) or old.out_channels != transition.num_old_classes:
            raise ValueError(
                f"classifier {classifier!r} is not a Conv2d with {transition.num_old_classes} "
                f"outputs: {old}"
            )
    if old.bias is None and init == "mass_preserving":
        raise ValueError(
            f"classifier {name!r} has no bias: mass-preserving expansion needs one to shift "
            "by -log k; use init='random'"
        )
    new = replace_classifier(student, name, transition.num_student_classes)
    index = {c: i for i, c in enumerate(transition.student_classes)}
    remainders = {s.remainder: s for s in transition.splits}
    for k, (old_class, members) in enumerate(teacher_map.sets.items()):
        if init == "random":
            members = (transition.representative(old_class),)
        shifts = _log_shares(members, remainders, remainder_share)
        for member in members:
            c = index[member]
            new.weight[c] = old.weight[k]
            if old.bias is not None:
                new.bias[c] = old.bias[k] + shifts[member]
    return student


def _log_shares(
    members: tuple[str, ...], remainders: dict, remainder_share: float | None
) -> dict[str, float]:
    """The log of each member's share of its old class's probability at step start (the
    shares sum to 1)."""
    remainder = next((m for m in members if m in remainders), None)
    if remainder_share is None or remainder is None or len(members) == 1:
        return {m: -math.log(len(members)) for m in members}
    others = math.log((1.0 - remainder_share) / (len(members) - 1))
    return {m: math.log(remainder_share) if m == remainder else others for m in members}
