"""The classes of a step and the transition from the teacher's classes to the student's.

A transition adds brand-new classes (hidden, in the old images, under one old class: the
background by default) and splits old classes into named children plus a remainder
(``car -> {car_other, police_car}``). From it follow the student's classes and the teacher map
``T``: old class ``k`` -> the set of student classes it now stands for (the rule is
:meth:`Transition.teacher_sets`; :class:`~incremental.labels.TeacherMap` carries it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Split:
    """An old class ``parent`` split into ``children`` and a ``remainder`` (its other kinds)."""

    parent: str
    children: tuple[str, ...]
    remainder: str

    @classmethod
    def of(cls, parent: str, children: Sequence[str], remainder: str | None = None) -> Split:
        return cls(parent, tuple(children), remainder or f"{parent}_other")


@dataclass(frozen=True)
class Transition:
    """From a teacher's ``old_classes`` to a student's classes.

    Student class order: the old classes in their order, each split parent replaced in place
    by its remainder, then the new classes, then the split children. Old class indices thus
    keep their meaning, which lets a teacher's head be expanded without permuting rows.

    Example:
        >>> t = Transition(("background", "coat", "car"), new_classes=("bag",),
        ...                splits=(Split.of("car", ["police_car"]),))
        >>> t.student_classes
        ('background', 'coat', 'car_other', 'bag', 'police_car')
        >>> t.teacher_sets()["car"], t.teacher_sets()["background"]
        (('car_other', 'police_car'), ('background', 'bag'))
    """

    old_classes: tuple[str, ...]
    new_classes: tuple[str, ...] = ()
    splits: tuple[Split, ...] = ()
    #: The old class under which the new classes hide in the old images; default: the first
    #: old class (background, by the usual convention).
    hidden_under: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "old_classes", tuple(self.old_classes))
        object.__setattr__(self, "new_classes", tuple(self.new_classes))
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.hidden_under is None and self.old_classes:
            object.__setattr__(self, "hidden_under", self.old_classes[0])
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Transition:
        """Build from a mapping such as a YAML block.

        Keys: ``old_classes`` (list), ``add`` (list of new classes), ``hidden_under`` (old
        class), ``split`` (``{parent: [children]}`` or ``{parent: {children: [...],
        remainder: name}}``).
        """
        allowed = {"old_classes", "add", "hidden_under", "split"}
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(
                f"transition: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if "old_classes" not in config:
            raise ValueError("transition: missing key 'old_classes'")
        splits = []
        for parent, spec in dict(config.get("split") or {}).items():
            if isinstance(spec, Mapping):
                bad = set(spec) - {"children", "remainder"}
                if bad:
                    raise ValueError(
                        f"transition.split.{parent}: unknown key(s) {sorted(bad)}; "
                        "allowed: ['children', 'remainder']"
                    )
                splits.append(
                    Split.of(parent, list(spec.get("children", [])), spec.get("remainder"))
                )
            elif isinstance(spec, Sequence) and not isinstance(spec, str):
                splits.append(Split.of(parent, list(spec)))
            else:
                raise ValueError(
                    f"transition.split.{parent}: expected a list of children or a mapping "
                    f"with 'children' and 'remainder', got {spec!r}"
                )
        return cls(
            old_classes=tuple(config["old_classes"]),
            new_classes=tuple(config.get("add") or ()),
            splits=tuple(splits),
            hidden_under=config.get("hidden_under"),
        )

    def to_config(self) -> dict[str, Any]:
        """The inverse of :meth:`from_config` (plain types, for saving beside results)."""
        return {
            "old_classes": list(self.old_classes),
            "add": list(self.new_classes),
            "hidden_under": self.hidden_under,
            "split": {
                s.parent: {"children": list(s.children), "remainder": s.remainder}
                for s in self.splits
            },
        }

    def _validate(self) -> None:
        if not self.old_classes:
            raise ValueError("transition: old_classes is empty")
        for where, names in (("old_classes", self.old_classes), ("add", self.new_classes)):
            for name in names:
                if not isinstance(name, str) or not name:
                    raise ValueError(
                        f"transition.{where}: class names must be non-empty strings, got {name!r}"
                    )
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"transition.{where}: duplicate class name(s) {dup}")
        if self.hidden_under not in self.old_classes:
            raise ValueError(
                f"transition.hidden_under: {self.hidden_under!r} is not an old class; "
                f"old classes: {list(self.old_classes)}"
            )
        parents = [s.parent for s in self.splits]
        for split in self.splits:
            if split.parent not in self.old_classes:
                raise ValueError(
                    f"transition.split: {split.parent!r} is not an old class; "
                    f"old classes: {list(self.old_classes)}"
                )
            if parents.count(split.parent) > 1:
                raise ValueError(f"transition.split: {split.parent!r} is split twice")
            if not split.children:
                raise ValueError(f"transition.split.{split.parent}: children is empty")
            if split.parent == self.hidden_under and self.new_classes:
                raise ValueError(
                    f"transition: {split.parent!r} is both split and the class new classes "
                    "hide under; set hidden_under to another old class"
                )
        student = self.student_classes
        dup = sorted({n for n in student if student.count(n) > 1})
        if dup:
            raise ValueError(
                f"transition: class name(s) {dup} used twice among the student's classes "
                f"{list(student)}; rename the new class, child or remainder"
            )

    # ------------------------------------------------------------------ derived views
    @property
    def num_old_classes(self) -> int:
        return len(self.old_classes)

    @property
    def student_classes(self) -> tuple[str, ...]:
        remainder = {s.parent: s.remainder for s in self.splits}
        kept = tuple(remainder.get(c, c) for c in self.old_classes)
        children = tuple(c for s in self.splits for c in s.children)
        return kept + self.new_classes + children

    @property
    def num_student_classes(self) -> int:
        return len(self.student_classes)

    @property
    def created_classes(self) -> tuple[str, ...]:
        """Student classes whose meaning the step creates: new classes, children, remainders."""
        return self.new_classes + tuple(c for s in self.splits for c in (s.remainder, *s.children))

    @property
    def step_classes(self) -> tuple[str, ...]:
        """The classes a step's new images label: new classes and split children (a
        remainder is never labeled on its own: it is the rest of its parent)."""
        return self.new_classes + tuple(c for s in self.splits for c in s.children)

    @property
    def unchanged_classes(self) -> tuple[str, ...]:
        """Student classes that are old classes with their meaning kept."""
        created = set(self.created_classes)
        return tuple(c for c in self.student_classes if c not in created)

    def representative(self, old_class: str) -> str:
        """The student class standing for ``old_class`` itself (itself, or its remainder)."""
        for s in self.splits:
            if s.parent == old_class:
                return s.remainder
        return old_class

    def teacher_sets(self, split_aware: bool = True) -> dict[str, tuple[str, ...]]:
        """``T``: old class -> the student classes it stands for now.

        With ``split_aware=False`` the map of methods that know only new classes (MiB, PLOP):
        every created child hides under ``hidden_under`` like a new class, and a split parent
        maps to its remainder alone.
        """
        sets: dict[str, tuple[str, ...]] = {}
        for old in self.old_classes:
            members = [self.representative(old)]
            if old == self.hidden_under:
                members += list(self.new_classes)
                if not split_aware:
                    members += [c for s in self.splits for c in s.children]
            if split_aware:
                members += [c for s in self.splits if s.parent == old for c in s.children]
            sets[old] = tuple(members)
        return sets

    def parent_classes(self) -> dict[str, str]:
        """Student class -> the name it evaluates under at parent level (children merged)."""
        parent = {c: c for c in self.student_classes}
        for s in self.splits:
            for c in (s.remainder, *s.children):
                parent[c] = s.parent
        return parent

    def single_split(self) -> Split:
        """The transition's one split, of one child (what the split diagnostics in
        ``benchmarks/`` study).

        Raises:
            ValueError: the transition splits nothing, more than one class, or into several
                children (the message names its splits).
        """
        if len(self.splits) != 1 or len(self.splits[0].children) != 1:
            found = [(s.parent, s.children) for s in self.splits] or "no split"
            raise ValueError(f"needs one split of one child, has {found}")
        return self.splits[0]
