"""What the values of a dataset's masks mean.

Each dataset declares, per mask value, one of: a class name, a list of class names (the pixel
is one of them), ``unlabeled`` or ``ignore``. Names are in the teacher's vocabulary (old
images, labeled before the step) or the student's (images labeled for this step). Validated
once here; :class:`~incremental.labels.candidate_sets.CandidateSetTable` turns declarations into
candidate sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from incremental.constants import IGNORE_INDEX, NUM_MASK_VALUES

UNLABELED = "unlabeled"
IGNORE = "ignore"
VOCABULARIES = ("old", "student")

Meaning = str | tuple[str, ...]


@dataclass(frozen=True)
class LabelDeclaration:
    """The label values of one dataset.

    Attributes:
        name: the dataset's name, used in error messages and in the membership table.
        values: mask value -> meaning (class name, tuple of class names, ``"unlabeled"`` or
            ``"ignore"``).
        vocabulary: ``"old"`` when class names are the teacher's (an old class that the step
            splits or hides a new class under then stands for all its student classes), or
            ``"student"``.
        exhaustive: which labeled classes were labeled wherever they appear (so an unlabeled
            pixel is none of them): ``True`` for all, ``False`` for none, or a tuple of names.
        absent: classes known not to appear in this dataset's images at all, in either
            vocabulary (old images can say that a new class is absent: "these never show a
            bag", so their background is background, not {background, bag}).
    """

    name: str
    values: Mapping[int, Meaning]
    vocabulary: Literal["old", "student"] = "student"
    exhaustive: bool | tuple[str, ...] = True
    absent: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(
                f"{where}: vocabulary {self.vocabulary!r} is not one of {list(VOCABULARIES)}"
            )
        if not self.values:
            raise ValueError(f"{where}: no label values declared")
        for value, meaning in self.values.items():
            if not isinstance(value, int) or not 0 <= value < NUM_MASK_VALUES:
                raise ValueError(
                    f"{where}: label value {value!r} is not an integer in "
                    f"[0, {NUM_MASK_VALUES - 1}]"
                )
            names = tuple(meaning) if isinstance(meaning, (tuple, list)) else (meaning,)
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ValueError(
                    f"{where}: value {value}: meaning {meaning!r} must be a class name, a list "
                    f"of class names, '{UNLABELED}' or '{IGNORE}'"
                )
            if len(names) > 1 and ({UNLABELED, IGNORE} & set(names)):
                raise ValueError(
                    f"{where}: value {value}: '{UNLABELED}'/'{IGNORE}' cannot be part of a list"
                )
        if IGNORE_INDEX in self.values and self.values[IGNORE_INDEX] != IGNORE:
            raise ValueError(
                f"{where}: value {IGNORE_INDEX} is reserved for '{IGNORE}' (padding and "
                f"augmentation fill use it), but it is declared as {self.values[IGNORE_INDEX]!r}"
            )

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> LabelDeclaration:
        """Build from a YAML-like mapping: ``values`` plus optional ``vocabulary``,
        ``exhaustive`` and ``absent``. Value keys may be ints or digit strings."""
        allowed = {"values", "vocabulary", "exhaustive", "absent"}
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(
                f"dataset {name!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if "values" not in config or not isinstance(config["values"], Mapping):
            raise ValueError(f"dataset {name!r}: 'values' must map mask values to meanings")
        values: dict[int, Meaning] = {}
        for key, meaning in config["values"].items():
            try:
                value = int(key)
            except (TypeError, ValueError):
                raise ValueError(
                    f"dataset {name!r}: label value {key!r} is not an integer"
                ) from None
            if value in values:
                raise ValueError(f"dataset {name!r}: label value {value} is declared twice")
            if isinstance(meaning, Sequence) and not isinstance(meaning, str):
                meaning = tuple(meaning)
            values[value] = meaning
        exhaustive = config.get("exhaustive", True)
        if isinstance(exhaustive, Sequence) and not isinstance(exhaustive, str):
            exhaustive = tuple(exhaustive)
        elif not isinstance(exhaustive, bool):
            raise ValueError(
                f"dataset {name!r}: exhaustive must be true, false or a list of class names, "
                f"got {exhaustive!r}"
            )
        return cls(
            name=name,
            values=values,
            vocabulary=config.get("vocabulary", "student"),
            exhaustive=exhaustive,
            absent=tuple(config.get("absent") or ()),
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "values": {
                v: (m if isinstance(m, str) else list(m)) for v, m in sorted(self.values.items())
            },
            "vocabulary": self.vocabulary,
            "exhaustive": self.exhaustive
            if isinstance(self.exhaustive, bool)
            else list(self.exhaustive),
            "absent": list(self.absent),
        }

    def class_index_lut(self, classes: Sequence[str]) -> np.ndarray:
        """(256,) int64: mask value -> index in ``classes`` of the one class it is declared
        as; -1 for values declared otherwise (several classes, unlabeled, ignore, undeclared)."""
        lut = np.full(NUM_MASK_VALUES, -1, dtype=np.int64)
        index = {c: i for i, c in enumerate(classes)}
        for value, meaning in self.values.items():
            if isinstance(meaning, str) and meaning in index:
                lut[value] = index[meaning]
        return lut

    def class_names(self) -> set[str]:
        """Every class name the declaration mentions."""
        names: set[str] = set()
        for meaning in self.values.values():
            names.update((meaning,) if isinstance(meaning, str) else meaning)
        names -= {UNLABELED, IGNORE}
        if not isinstance(self.exhaustive, bool):
            names.update(self.exhaustive)
        names.update(self.absent)
        return names
