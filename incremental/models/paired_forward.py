"""The forwards of one training step: the student's, and the frozen teacher's when needed.

The teacher runs under ``torch.inference_mode``: it records no graph and its outputs are
inference tensors, which the losses only read. When the student's body is frozen (only its
classifier trains), teacher and student compute the same features: they are computed once and
fed to both heads (:func:`shared_head`).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import nn

from incremental.models.features import FEATURE_LAYERS, segment_with_features
from incremental.models.head import find_classifier


class Forwards(NamedTuple):
    """What one training step's forwards give.

    Attributes:
        logits: student logits (B, C, H, W), with grad.
        teacher_logits: teacher logits (B, K, H, W), inference tensors; None without teacher.
        student_features, teacher_features: feature maps for feature distillation, or None.
    """

    logits: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    student_features: list[torch.Tensor] | None = None
    teacher_features: list[torch.Tensor] | None = None


def head_name(model: nn.Module, num_classes: int) -> str:
    """The qualified name of the submodule that turns ``model``'s features into its logits.

    smp's ``segmentation_head`` when it holds the classifier (it may upsample after the
    classifier: DeepLabV3), otherwise the classifier itself (:func:`find_classifier`).
    """
    name, _ = find_classifier(model, num_classes)
    if name.startswith("segmentation_head."):
        return "segmentation_head"
    return name


def _state_outside(model: nn.Module, head: str) -> dict[str, torch.Tensor]:
    prefix = f"{head}."
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}


def same_body(student: nn.Module, teacher: nn.Module, head: str) -> bool:
    """Whether ``student`` and ``teacher`` are the same network outside their ``head``:
    same class, same parameter and buffer names, equal values."""
    if type(student) is not type(teacher):
        return False
    ours, theirs = _state_outside(student, head), _state_outside(teacher, head)
    return ours.keys() == theirs.keys() and all(
        v.shape == theirs[k].shape and torch.equal(v, theirs[k].to(v.device))
        for k, v in ours.items()
    )


def shared_head(
    student: nn.Module, teacher: nn.Module, num_classes: int, num_old_classes: int
) -> str | None:
    """The head whose input the teacher can take from the student's forward, or None: the
    networks must be equal outside their heads (a frozen student body stays equal to the
    teacher's through training; a trainable one parts from it at the first step)."""
    head = head_name(student, num_classes)
    if head != head_name(teacher, num_old_classes):
        return None
    return head if same_body(student, teacher, head) else None


def forward_to_head(
    model: nn.Module, head: str, images: torch.Tensor
) -> tuple[torch.Tensor, tuple[Any, ...] | None]:
    """``model(images)`` and the positional inputs its submodule ``head`` received.

    Args:
        images: (B, 3, H, W).

    Returns:
        logits (B, C, H, W), and the head's inputs (for smp models the decoder output,
        (B, D, H, W)); None instead of the inputs when the model's output is not the head's
        own output (the model transforms it after the head), so that the inputs would not
        give the model's logits through another head.
    """
    seen: dict[str, Any] = {}

    def capture(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        seen["args"], seen["output"] = args, output

    handle = model.get_submodule(head).register_forward_hook(capture)
    try:
        logits = model(images)
    finally:
        handle.remove()
    # An identity check, not a value check: the head's output object must be what the model
    # returned, with nothing applied in between.
    return logits, (seen["args"] if seen.get("output") is logits else None)


class PairedForward:
    """Student and (optionally) teacher outputs of a batch.

    Args:
        student: the network being trained.
        teacher: the frozen old model, or None.
        features: also return these feature maps of both (for feature distillation; the
            student's alone without a teacher): one of
            :data:`~incremental.models.features.FEATURE_LAYERS`, or None.
        shared: the head name from :func:`shared_head` when the student's body is frozen:
            one body forward feeds both heads.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        *,
        features: str | None = None,
        shared: str | None = None,
    ) -> None:
        if shared and teacher is None:
            raise ValueError("a shared body needs a teacher")
        if features and shared:
            raise ValueError("feature distillation compares two bodies: no shared forward")
        if features is not None and features not in FEATURE_LAYERS:
            raise ValueError(f"features: {features!r} is not one of {list(FEATURE_LAYERS)}")
        self.student, self.teacher = student, teacher
        self.features, self.shared = features, shared

    def __call__(self, images: torch.Tensor) -> Forwards:
        """Outputs for images (B, 3, H, W) (see :class:`Forwards`)."""
        if self.shared is not None:
            return self._shared(images)
        teacher_logits = teacher_features = student_features = None
        if self.teacher is not None:
            with torch.inference_mode():
                if self.features:
                    teacher_logits, teacher_features = segment_with_features(
                        self.teacher, images, self.features
                    )
                else:
                    teacher_logits = self.teacher(images)
        if self.features:
            logits, student_features = segment_with_features(self.student, images, self.features)
        else:
            logits = self.student(images)
        return Forwards(logits, teacher_logits, student_features, teacher_features)

    def _shared(self, images: torch.Tensor) -> Forwards:
        """The teacher's head reads the input of the student's: equal to two separate
        forwards (``tests/models/test_paired_forward.py``) because the bodies are equal."""
        logits, head_inputs = forward_to_head(self.student, self.shared, images)
        if head_inputs is None:
            warnings.warn(
                f"{type(self.student).__name__} transforms the output of its {self.shared!r}: "
                "the teacher runs its own forward from now on",
                stacklevel=2,
            )
            self.shared = None
            with torch.inference_mode():
                return Forwards(logits, self.teacher(images))
        with torch.inference_mode():
            return Forwards(logits, self.teacher.get_submodule(self.shared)(*head_inputs))
