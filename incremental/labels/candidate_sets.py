"""The membership table: (dataset, mask value) -> candidate set over the student's classes.

Every labeled pixel stands for the set of student classes it may belong to (DESIGN §2). The
table is built once from the datasets' declarations and the transition, validated, and then
looked up per pixel on the device with one gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from incremental.constants import IGNORE_INDEX, NUM_MASK_VALUES
from incremental.labels.declaration import IGNORE, UNLABELED, LabelDeclaration
from incremental.labels.teacher_map import TeacherMap
from incremental.labels.transition import Transition

UnlabeledAs = Literal["candidates", "ignore"] | str
OldLabelsAs = Literal["sets", "representative"]


class CandidateSetTable:
    """Candidate sets of every declared (dataset, value).

    Args:
        declarations: one per dataset; the dataset index of a sample is its position here.
        transition: the step's classes.
        unlabeled: how an ``unlabeled`` value is read. ``"candidates"``: every class except
            those the dataset labels exhaustively (the right reading); ``"ignore"``: every
            class (no information); a class name: that class (naive fine-tuning's "unlabeled =
            background").
        old_labels: how an old-vocabulary class is read. ``"sets"``: the student classes it now
            stands for, ``T(k)``; ``"representative"``: the one student class that keeps its
            index (naive: "car" means "car_other").
        teacher_map: the T that resolves old names (default: the split-aware map of
            ``transition``); a step's :class:`~incremental.labels.StepLabels` passes its own.
        check_teachable: refuse a student class that neither a dataset nor the teacher can
            ever single out.

    Attributes:
        sets: (D, 256, C) bool; undeclared values hold the full set.
        sets_by_class: the same as (D, C, 256), the layout :func:`lookup_candidates` reads.
        declared: (D, 256) bool.
        informative: (D, 256) bool, values whose set is not every class.
    """

    def __init__(
        self,
        declarations: Sequence[LabelDeclaration],
        transition: Transition,
        *,
        unlabeled: UnlabeledAs = "candidates",
        old_labels: OldLabelsAs = "sets",
        teacher_map: TeacherMap | None = None,
        check_teachable: bool = True,
    ) -> None:
        if not declarations:
            raise ValueError("no dataset declarations given")
        names = [d.name for d in declarations]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"dataset name(s) {dup} declared twice")
        if old_labels not in ("sets", "representative"):
            raise ValueError(f"old_labels must be 'sets' or 'representative', got {old_labels!r}")
        self.transition = transition
        self.classes = transition.student_classes
        self.dataset_names = tuple(names)
        if teacher_map is None:
            teacher_map = TeacherMap(transition)
        elif teacher_map.transition != transition:
            raise ValueError("teacher_map: built for another transition")
        self._teacher_sets = teacher_map.sets
        self._unlabeled = unlabeled
        self._old_labels = old_labels
        num_classes = len(self.classes)
        self.sets = torch.ones(len(declarations), NUM_MASK_VALUES, num_classes, dtype=torch.bool)
        self.declared = torch.zeros(len(declarations), NUM_MASK_VALUES, dtype=torch.bool)
        self.declared[:, IGNORE_INDEX] = True  # padding may add it to any dataset
        self._resolved: list[dict[int, frozenset[str]]] = []
        for d, declaration in enumerate(declarations):
            resolved = self._resolve_declaration(declaration)
            self._resolved.append(resolved)
            for value, members in resolved.items():
                self.sets[d, value] = torch.tensor([c in members for c in self.classes])
                self.declared[d, value] = True
        self.informative = ~self.sets.all(dim=2)
        self.sets_by_class = self.sets.transpose(1, 2).contiguous()
        if check_teachable:
            self._check_teachable()

    # ------------------------------------------------------------------ resolution
    def _resolve_name(
        self, declaration: LabelDeclaration, name: str, value: object
    ) -> frozenset[str]:
        where = f"dataset {declaration.name!r}, value {value}"
        if declaration.vocabulary == "old" or (
            name in self._teacher_sets and name not in self.classes
        ):
            if name not in self._teacher_sets:
                raise ValueError(
                    f"{where}: {name!r} is not one of the teacher's classes "
                    f"{list(self._teacher_sets)} (the dataset's vocabulary is 'old')"
                )
            if self._old_labels == "representative":
                return frozenset({self.transition.representative(name)})
            return frozenset(self._teacher_sets[name])
        if name not in self.classes:
            raise ValueError(
                f"{where}: {name!r} is not one of the student's classes {list(self.classes)}"
            )
        return frozenset({name})

    def _resolve_absent(self, declaration: LabelDeclaration, name: str) -> frozenset[str]:
        """A class known not to appear: a student class (the new classes of old images, which
        the old vocabulary cannot name) or a teacher class (all it stands for now)."""
        if name in self.classes:
            return frozenset({name})
        if name in self._teacher_sets:
            return frozenset(self._teacher_sets[name])
        raise ValueError(
            f"dataset {declaration.name!r}, absent: {name!r} is neither one of the student's "
            f"classes {list(self.classes)} nor of the teacher's {list(self._teacher_sets)}"
        )

    def _resolve_declaration(self, declaration: LabelDeclaration) -> dict[int, frozenset[str]]:
        everything = frozenset(self.classes)
        labeled: dict[int, frozenset[str]] = {}
        for value, meaning in declaration.values.items():
            if meaning in (UNLABELED, IGNORE):
                continue
            names = (meaning,) if isinstance(meaning, str) else meaning
            labeled[value] = frozenset().union(
                *(self._resolve_name(declaration, n, value) for n in names)
            )
        if declaration.exhaustive is True:
            exhaustive = frozenset().union(*labeled.values())
        elif declaration.exhaustive is False:
            exhaustive = frozenset()
        else:
            exhaustive = frozenset().union(
                *(self._resolve_name(declaration, n, "exhaustive") for n in declaration.exhaustive)
            )
        absent = frozenset().union(
            *(self._resolve_absent(declaration, n) for n in declaration.absent)
        )
        resolved: dict[int, frozenset[str]] = {}
        for value, meaning in declaration.values.items():
            if meaning == IGNORE:
                resolved[value] = everything
                continue
            if meaning == UNLABELED:
                members = self._unlabeled_set(declaration, exhaustive, value)
            else:
                members = labeled[value]
            members = members - absent
            if not members:
                raise ValueError(
                    f"dataset {declaration.name!r}, value {value} ({meaning!r}): empty candidate "
                    f"set (exhaustively labeled: {sorted(exhaustive)}, absent: "
                    f"{sorted(absent)}); no class could be there"
                )
            resolved[value] = members
        return resolved

    def _unlabeled_set(
        self, declaration: LabelDeclaration, exhaustive: frozenset[str], value: int
    ) -> frozenset[str]:
        if self._unlabeled == "candidates":
            return frozenset(self.classes) - exhaustive
        if self._unlabeled == "ignore":
            return frozenset(self.classes)
        if self._unlabeled not in self.classes:
            raise ValueError(
                f"unlabeled={self._unlabeled!r}: expected 'candidates', 'ignore' or one of the "
                f"student's classes {list(self.classes)}"
            )
        return frozenset({self._unlabeled})

    def _check_teachable(self) -> None:
        sets = {s for resolved in self._resolved for s in resolved.values()}
        sets.discard(frozenset(self.classes))
        teacher = [frozenset(t) for t in self._teacher_sets.values()]
        singled_out = {next(iter(s)) for s in sets | set(teacher) if len(s) == 1}
        for s in sets:
            for t in teacher:
                both = s & t
                if len(both) == 1:
                    singled_out |= both
        missing = [c for c in self.classes if c not in singled_out]
        if missing:
            raise ValueError(
                f"student class(es) {missing} can never be taught: no dataset labels them apart "
                f"from other classes and no teacher class maps to them alone. Datasets: "
                f"{list(self.dataset_names)}"
            )

    # ------------------------------------------------------------------ queries
    def candidate_set(self, dataset: str, value: int) -> frozenset[str]:
        """The candidate set (class names) of one declared value; full set for ``ignore``."""
        d = self.dataset_names.index(dataset)
        if not bool(self.declared[d, value]):
            raise KeyError(f"dataset {dataset!r}: value {value} is not declared")
        return frozenset(
            c for c, m in zip(self.classes, self.sets[d, value].tolist(), strict=True) if m
        )

    def undeclared_values(self, dataset_index: int, mask: torch.Tensor) -> list[int]:
        """Values present in ``mask`` that dataset ``dataset_index`` does not declare."""
        present = torch.unique(mask).tolist()
        declared = self.declared[dataset_index]
        return [v for v in present if not 0 <= v < NUM_MASK_VALUES or not bool(declared[v])]

    def lookup(self, mask: torch.Tensor, dataset: torch.Tensor) -> torch.Tensor:
        """Candidate sets of every pixel.

        Args:
            mask: (B, H, W) integer mask values in [0, 255].
            dataset: (B,) dataset index of each sample.

        Returns:
            (B, C, H, W) bool, True where the class is a candidate.
        """
        return lookup_candidates(self.sets_by_class.to(mask.device), mask, dataset)

    def lookup_informative(self, mask: torch.Tensor, dataset: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: pixels whose candidate set is not every class."""
        return lookup_informative(self.informative.to(mask.device), mask, dataset)


def lookup_candidates(
    sets_by_class: torch.Tensor, mask: torch.Tensor, dataset: torch.Tensor
) -> torch.Tensor:
    """Per-pixel candidate sets from a (D, C, 256) table: -> (B, C, H, W) bool, contiguous.

    Gathering along the (D, C, 256) layout makes the result contiguous in (B, C, H, W), so the
    losses read it with the logits' strides.
    """
    b, h, w = mask.shape
    per_sample = sets_by_class[dataset.long()]
    index = mask.long().view(b, 1, h * w).expand(b, per_sample.shape[1], h * w)
    return per_sample.gather(2, index).view(b, -1, h, w)


def lookup_informative(
    informative: torch.Tensor, mask: torch.Tensor, dataset: torch.Tensor
) -> torch.Tensor:
    """Per-pixel "set is not every class" from a (D, 256) table: -> (B, H, W) bool."""
    return informative[dataset.long()[:, None, None], mask.long()]
