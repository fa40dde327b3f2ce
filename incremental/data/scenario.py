"""A scenario: the step's transition plus every dataset a run needs, from configuration.

Whatever builds them (Fashion scenes, folders, paper protocols), a scenario hands the runner:
the old training data in old labels, the new training data with partial labels, full-label
versions of both (for the oracle; may be absent for real data), and validation and test data
with complete ground truth in the student's classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from incremental.data.core import SegmentationSource
from incremental.labels import Transition

if TYPE_CHECKING:
    from incremental.models.existing import ExistingModel


@dataclass
class Scenario:
    """Everything one step of one scenario trains and evaluates on.

    Attributes:
        name: scenario name (a results table row key).
        transition: teacher classes -> student classes.
        old_train: old images in old labels (trains the teacher; replayed when asked); one
            source or several (folders labeled differently).
        new_train: new images, labeled only for the step's classes; one source or several.
        val, test: complete ground truth in the student's classes (mask value = class index).
        old_train_full, new_train_full: the same images fully labeled in the student's classes,
            for the oracle; None when unknown.
        old_val: old-class validation data for the teacher (step 0) in old labels; None when
            the old model is given (``teacher``).
        old_test: the test scenes labeled in the old classes (a split child as its parent;
            a new class, which the old model never saw, ignored): the old model's score on the
            step's own test scenes; None where unknown.
        info: scenario parameters worth reporting beside results (sizes, sibling rate...).
        report_new_classes: classes scored as "new" when not the transition's created ones
            (later steps of a multi-step benchmark: every class added after step 0).
        teacher: the user's already trained old model; None: trained from ``old_train``.
    """

    name: str
    transition: Transition
    old_train: SegmentationSource | tuple[SegmentationSource, ...]
    new_train: SegmentationSource | tuple[SegmentationSource, ...]
    val: SegmentationSource
    test: SegmentationSource
    old_val: SegmentationSource | None
    old_test: SegmentationSource | None = None
    old_train_full: SegmentationSource | None = None
    new_train_full: SegmentationSource | None = None
    info: dict[str, Any] = field(default_factory=dict)
    report_new_classes: tuple[str, ...] | None = None
    teacher: ExistingModel | None = None


def as_sources(
    sources: SegmentationSource | tuple[SegmentationSource, ...] | list[SegmentationSource],
) -> list[SegmentationSource]:
    """One source or several, as a list."""
    return list(sources) if isinstance(sources, (tuple, list)) else [sources]
