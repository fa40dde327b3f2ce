"""A scenario: the step's transition plus every dataset a run needs, from configuration.

Whatever builds them (Fashion scenes, folders, paper protocols), a scenario hands the runner:
the old training data in old labels, the new training data with partial labels, full-label
versions of both (for the oracle; may be absent for real data), and validation and test data
with complete ground truth in the student's classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incremental.data.base import SegmentationSource
from incremental.labels import Transition


@dataclass
class Scenario:
    """Everything one step of one scenario trains and evaluates on.

    Attributes:
        name: scenario name (a results table row key).
        transition: teacher classes -> student classes.
        old_train: old images in old labels (trains the teacher; replayed when asked).
        new_train: new images, labeled only for the step's classes.
        val, test: complete ground truth in the student's classes (mask value = class index).
        old_train_full, new_train_full: the same images fully labeled in the student's classes,
            for the oracle; None when unknown.
        old_val: old-class validation data for the teacher (step 0) in old labels.
        info: scenario parameters worth reporting beside results (sizes, sibling rate...).
        report_new_classes: classes scored as "new" when not the transition's created ones
            (later steps of a multi-step benchmark: every class added after step 0).
    """

    name: str
    transition: Transition
    old_train: SegmentationSource
    new_train: SegmentationSource
    val: SegmentationSource
    test: SegmentationSource
    old_val: SegmentationSource
    old_train_full: SegmentationSource | None = None
    new_train_full: SegmentationSource | None = None
    info: dict[str, Any] = field(default_factory=dict)
    report_new_classes: tuple[str, ...] | None = None
