"""The teacher map T of a step, built once and handed to everything that needs it.

``T(k)`` is the set of student classes that the teacher's old class ``k`` stands for after the
transition (:meth:`Transition.teacher_sets` is the rule). The candidate-set table resolves
old-vocabulary labels through it, head expansion copies old rows into it, distillation and
refinement read its matrix, the audit reads its hiding places: one object, so they cannot
disagree on ``split_aware``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from incremental.labels.transition import Transition


class TeacherMap:
    """``T`` for one transition, split-aware or not.

    Args:
        transition: the step.
        split_aware: the map of methods that know splits (True), or of those that know only
            new classes (False: MiB, PLOP; every created class hides under the background).

    Attributes:
        sets: old class -> its student classes, in the teacher's class order.
        matrix: (K, C) bool, row k marks the student classes of old class k.
        representatives: (K,) long, the student index of the class that keeps k's meaning
            (k itself, or its remainder when k is split).

    Example:
        >>> from incremental.labels import Split
        >>> t = Transition(("background", "car"), splits=(Split.of("car", ["police_car"]),))
        >>> TeacherMap(t).sets["car"], TeacherMap(t, split_aware=False).sets["car"]
        (('car_other', 'police_car'), ('car_other',))
    """

    def __init__(self, transition: Transition, split_aware: bool = True) -> None:
        self.transition = transition
        self.split_aware = split_aware
        self.sets: Mapping[str, tuple[str, ...]] = transition.teacher_sets(split_aware)
        index = {c: i for i, c in enumerate(transition.student_classes)}
        matrix = torch.zeros(transition.num_old_classes, transition.num_student_classes)
        self.matrix = matrix.bool()
        for k, members in enumerate(self.sets.values()):
            self.matrix[k, [index[c] for c in members]] = True
        self.representatives = torch.tensor(
            [index[transition.representative(k)] for k in transition.old_classes]
        )

    def __repr__(self) -> str:
        return f"TeacherMap({dict(self.sets)!r}, split_aware={self.split_aware})"

    def hiding_places(self) -> dict[str, str]:
        """Created class -> the old class it was labeled as in the old images (new classes
        under ``hidden_under``, split children under their parent). A split's remainder is
        not hidden: it is the rest of its parent."""
        places = {}
        for old_class, members in self.sets.items():
            for member in members:
                if member != self.transition.representative(old_class):
                    places[member] = old_class
        return places
