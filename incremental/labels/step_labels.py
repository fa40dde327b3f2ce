"""A step's label space, built once: what every training pixel may be, and what is scored.

:class:`StepLabels` is made from the transition, the training datasets' declarations and the
strategy's :class:`LabelReading`. It owns the teacher map T, the candidate-set table (row d =
training dataset d), the representatives of the old classes and the evaluation target (which
classes count as new, the parent of each split class). Head expansion, the LightningModule,
the metrics and the audit read it; none of them derives these again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from incremental.labels.candidate_sets import (
    CandidateSetTable,
    lookup_candidates,
    lookup_informative,
)
from incremental.labels.declaration import LabelDeclaration
from incremental.labels.teacher_map import TeacherMap
from incremental.labels.transition import Transition

UNLABELED_READINGS = ("candidates", "ignore")
OLD_LABEL_READINGS = ("sets", "representative")


@dataclass(frozen=True)
class LabelReading:
    """How a strategy reads the datasets' declarations.

    Attributes:
        unlabeled: ``"candidates"`` (every class but the exhaustively labeled ones),
            ``"ignore"``, or a class name (naive fine-tuning's ``"background"``).
        old_labels: ``"sets"`` (old class k means T(k)) or ``"representative"`` (the class
            that keeps k's index: "car" means "car_other").
        split_aware: which teacher map resolves old names and guides the step
            (:class:`~incremental.labels.TeacherMap`).
        full_labels: train on fully labeled copies of the data (the oracle).
    """

    unlabeled: str = "candidates"
    old_labels: str = "sets"
    split_aware: bool = True
    full_labels: bool = False

    def __post_init__(self) -> None:
        if self.old_labels not in OLD_LABEL_READINGS:
            raise ValueError(
                f"old_labels: {self.old_labels!r} is not one of {list(OLD_LABEL_READINGS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepLabels:
    """Everything one step knows about labels.

    Args:
        transition: the step (an identity transition for step 0).
        declarations: the training datasets' declarations; dataset d is row d of the table.
        reading: how the strategy reads them.
        report_new_classes: the classes scored as "new" (default: those the transition
            creates; multi-step benchmarks score every class added after step 0).
        check_teachable: refuse a student class that no dataset and no teacher class can
            single out (naive baselines may leave one untaught: that is what they show).

    Attributes:
        teacher_map: T (split-aware as ``reading`` says).
        table: the candidate sets of every (dataset, mask value).
        classes: the student's classes, in channel order.
        new_classes: the classes scored as "new".
        parents: class -> the name it is scored under at parent level (children merged).
    """

    def __init__(
        self,
        transition: Transition,
        declarations: Sequence[LabelDeclaration],
        reading: LabelReading | None = None,
        *,
        report_new_classes: Sequence[str] | None = None,
        check_teachable: bool = True,
    ) -> None:
        self.transition = transition
        self.reading = reading or LabelReading()
        self.teacher_map = TeacherMap(transition, self.reading.split_aware)
        self.table = CandidateSetTable(
            declarations,
            transition,
            unlabeled=self.reading.unlabeled,
            old_labels=self.reading.old_labels,
            teacher_map=self.teacher_map,
            check_teachable=check_teachable,
        )
        self.classes = transition.student_classes
        self.new_classes = tuple(report_new_classes or transition.created_classes)
        self.parents = transition.parent_classes()

    @classmethod
    def identity(
        cls, classes: Sequence[str], declarations: Sequence[LabelDeclaration]
    ) -> StepLabels:
        """Step 0: the old model learns ``classes`` from fully labeled old data. Classes the
        declarations call absent that step 0 does not know (a later step's new classes) are
        absent from its classes anyway, and dropped."""
        known = set(classes)
        declarations = [
            replace(d, absent=tuple(n for n in d.absent if n in known)) for d in declarations
        ]
        return cls(Transition(tuple(classes)), declarations)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class LabelLookup(nn.Module):
    """The label tensors a training step reads, as buffers that follow the module's device
    (not saved in checkpoints: they are rebuilt from the configuration).

    Attributes:
        candidate_sets: (D, C, 256) bool, the table in the layout the lookup gathers from.
        informative_values: (D, 256) bool, values whose set is not every class.
        teacher_sets: (K, C) bool, T.
        representatives: (K,) long.
        added_classes: (C,) bool, the classes the step adds (not split children): the teacher
            never saw them.
    """

    def __init__(self, labels: StepLabels) -> None:
        super().__init__()
        self.register_buffer("candidate_sets", labels.table.sets_by_class.clone(), persistent=False)
        self.register_buffer(
            "informative_values", labels.table.informative.clone(), persistent=False
        )
        self.register_buffer("teacher_sets", labels.teacher_map.matrix.clone(), persistent=False)
        self.register_buffer(
            "representatives", labels.teacher_map.representatives.clone(), persistent=False
        )
        added = torch.tensor([c in labels.transition.new_classes for c in labels.classes])
        self.register_buffer("added_classes", added, persistent=False)

    def forward(
        self, mask: torch.Tensor, dataset: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate sets (B, C, H, W) bool and informative pixels (B, H, W) bool of a batch's
        masks (B, H, W) and dataset indices (B,)."""
        return (
            lookup_candidates(self.candidate_sets, mask, dataset),
            lookup_informative(self.informative_values, mask, dataset),
        )
