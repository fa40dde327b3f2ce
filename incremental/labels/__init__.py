"""Classes, transitions, label declarations and candidate sets (DESIGN §2)."""

from incremental.labels.candidate_sets import (
    CandidateSetTable,
    lookup_candidates,
    lookup_informative,
)
from incremental.labels.declaration import IGNORE, UNLABELED, LabelDeclaration
from incremental.labels.step_labels import LabelLookup, LabelReading, StepLabels
from incremental.labels.teacher_map import TeacherMap
from incremental.labels.transition import Split, Transition

__all__ = [
    "IGNORE",
    "UNLABELED",
    "CandidateSetTable",
    "LabelDeclaration",
    "LabelLookup",
    "LabelReading",
    "Split",
    "StepLabels",
    "TeacherMap",
    "Transition",
    "lookup_candidates",
    "lookup_informative",
]
