"""Classes, transitions, label declarations and candidate sets (DESIGN §2)."""

from incremental.labels.candidate_sets import (
    CandidateSetTable,
    lookup_candidates,
    lookup_informative,
)
from incremental.labels.declaration import IGNORE, UNLABELED, LabelDeclaration
from incremental.labels.transition import Split, Transition

__all__ = [
    "IGNORE",
    "UNLABELED",
    "CandidateSetTable",
    "LabelDeclaration",
    "Split",
    "Transition",
    "lookup_candidates",
    "lookup_informative",
]
