"""Check dataset folders before training: every problem at once, and a summary of the values.

One pass over the files: each image and mask is decoded once (a truncated file fails only on
decoding), and each mask's values are counted with ``np.bincount``. ``python -m incremental
check DATASET.yaml`` prints the result; :class:`~incremental.data.folders.FolderDataset` refuses
a dataset with any problem found here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from incremental.constants import IGNORE_INDEX, NUM_MASK_VALUES
from incremental.data.core import (
    DatasetError,
    Problem,
    decode,
    mask_mode_problem,
    size_mismatch,
)
from incremental.data.folders.layout import FilePairs, FolderLayout, pair_files, read_layout
from incremental.labels import IGNORE, UNLABELED, CandidateSetTable, LabelDeclaration, Transition

__all__ = [
    "DatasetError",
    "DatasetReport",
    "Problem",
    "check_command",
    "check_dataset",
    "class_name_problems",
    "format_summary",
    "inspect_dataset",
]


@dataclass
class DatasetReport:
    """What a check found in one dataset.

    Attributes:
        layout: the parsed YAML; None if it could not be read.
        pairs: the image-mask pairs, sorted by stem.
        pixel_counts: (256,) int64, pixels of each mask value over all readable masks.
        image_counts: (256,) int64, number of masks in which each value occurs.
        problems: every problem, in the order YAML, class names, folders, files by stem.
        decoded: whether the files were decoded (counts are zero otherwise).
    """

    yaml_path: Path
    layout: FolderLayout | None = None
    pairs: FilePairs = field(default_factory=lambda: FilePairs((), (), ()))
    pixel_counts: np.ndarray = field(default_factory=lambda: _zero_counts())
    image_counts: np.ndarray = field(default_factory=lambda: _zero_counts())
    problems: list[Problem] = field(default_factory=list)
    decoded: bool = False

    @property
    def num_images(self) -> int:
        return len(self.pairs.stems)


def _zero_counts() -> np.ndarray:
    return np.zeros(NUM_MASK_VALUES, dtype=np.int64)


def check_dataset(
    yaml_path: str | Path,
    classes: Sequence[str] | None = None,
    transition: Transition | None = None,
) -> list[Problem]:
    """Every problem of a dataset folder; empty when it is fit for training.

    Args:
        yaml_path: the dataset's YAML.
        classes: class names the experiment knows; other names in the YAML are problems.
        transition: the step; every name in the YAML must resolve to student classes.
    """
    return inspect_dataset(yaml_path, classes, transition).problems


def inspect_dataset(
    yaml_path: str | Path,
    classes: Sequence[str] | None = None,
    transition: Transition | None = None,
    *,
    decode: bool = True,
    workers: int | None = None,
) -> DatasetReport:
    """Check a dataset and count its mask values (see :class:`DatasetReport`).

    Args:
        decode: decode every file; False checks only the YAML, class names and pairing.
        workers: threads decoding files (PIL decodes without the GIL); default up to 8.
    """
    report = DatasetReport(Path(yaml_path))
    layout, report.problems = read_layout(yaml_path)
    report.layout = layout
    if layout is None:
        return report
    if layout.declaration is not None:
        report.problems += class_name_problems(
            layout.declaration, str(layout.yaml_path), classes, transition
        )
    report.pairs, pair_problems = pair_files(layout)
    report.problems += pair_problems
    if decode:
        declared = None if layout.declaration is None else frozenset(layout.declaration.values)
        pairs = zip(report.pairs.images, report.pairs.masks, strict=True)
        for problems, counts in _map(lambda p: _check_pair(*p, declared), pairs, workers):
            report.problems += problems
            if counts is not None:
                report.pixel_counts += counts
                report.image_counts += counts > 0
        report.decoded = True
    return report


def _map(function: Callable, items: Iterable, workers: int | None) -> Iterator:
    """``map`` over threads, results in input order (so problems come sorted by stem)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1:
        return map(function, items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return iter(list(pool.map(function, items)))


def _check_pair(
    image_path: Path, mask_path: Path, declared: frozenset[int] | None
) -> tuple[list[Problem], np.ndarray | None]:
    """Problems of one image-mask pair, and the mask's (256,) value counts if readable."""
    problems: list[Problem] = []
    image_size = None
    try:
        image_size = decode(image_path, "image").size
    except DatasetError as error:
        problems += error.problems
    try:
        mask = decode(mask_path, "mask")
    except DatasetError as error:
        return problems + error.problems, None
    mode_problem = mask_mode_problem(mask)
    if mode_problem is not None:
        return problems + [Problem(str(mask_path), mode_problem)], None
    if image_size is not None and mask.size != image_size:
        problems.append(Problem(str(mask_path), size_mismatch(image_size, mask.size, image_path)))
    counts = np.bincount(np.asarray(mask).ravel(), minlength=NUM_MASK_VALUES)
    if declared is not None:
        undeclared = [int(v) for v in np.flatnonzero(counts) if int(v) not in declared]
        if undeclared:
            problems.append(
                Problem(str(mask_path), _undeclared_message(undeclared, counts, declared))
            )
    return problems, counts


def _undeclared_message(undeclared: list[int], counts: np.ndarray, declared: frozenset[int]) -> str:
    found = ", ".join(f"{v} ({counts[v]} px)" for v in undeclared)
    message = f"undeclared mask value(s) {found}; declared: {', '.join(map(str, sorted(declared)))}"
    if IGNORE_INDEX in undeclared:
        # The classic case: a binary mask saved as 0/255, where 255 was meant as the class.
        message += (
            f"; {IGNORE_INDEX} is reserved for 'ignore': declare '{IGNORE_INDEX}: ignore' if it "
            "marks don't-care pixels, or re-save the masks with another value if it is a class"
        )
    return message


# ---------------------------------------------------------------------------------- class names
def class_name_problems(
    declaration: LabelDeclaration,
    where: str,
    classes: Sequence[str] | None = None,
    transition: Transition | None = None,
) -> list[Problem]:
    """Class names in a declaration that the experiment does not know, each with its value.

    With a transition, names are resolved as training would (:class:`CandidateSetTable`, which
    also refuses e.g. a value whose candidate set is empty). Unknown names are listed first,
    all of them, as the table stops at the first.
    """
    problems: list[Problem] = []
    if classes is not None:
        problems += _unknown_names(
            declaration, where, set(classes), f"the experiment's classes {list(classes)}"
        )
    if transition is not None:
        if declaration.vocabulary == "old":
            known = set(transition.old_classes)
            what = f"the teacher's classes {list(transition.old_classes)} (vocabulary: old)"
        else:
            # The table also reads a student-vocabulary name as the teacher's when only the
            # teacher has it (e.g. a split parent).
            known = set(transition.student_classes) | set(transition.old_classes)
            what = f"the student's classes {list(transition.student_classes)}"
        # "absent" may name a class of either vocabulary (a new class absent from old images).
        either = set(transition.student_classes) | set(transition.old_classes)
        both = f"the student's or the teacher's classes {sorted(either)}"
        unknown = _unknown_names(declaration, where, known, what, skip="absent")
        unknown += [
            Problem(where, f"labels: absent: class {name!r} is not one of {both}")
            for name in declaration.absent
            if name not in either
        ]
        problems += unknown
        if not unknown:
            try:
                CandidateSetTable([declaration], transition, check_teachable=False)
            except ValueError as error:
                problems.append(Problem(where, str(error)))
    return problems


def _unknown_names(
    declaration: LabelDeclaration, where: str, known: set[str], what: str, skip: str = ""
) -> list[Problem]:
    return [
        Problem(where, f"labels: {place}: class {name!r} is not one of {what}")
        for place, name in _named_classes(declaration)
        if name not in known and place != skip
    ]


def _named_classes(declaration: LabelDeclaration) -> Iterator[tuple[str, str]]:
    """(where in the YAML, class name) for every class the declaration names."""
    for value, meaning in sorted(declaration.values.items()):
        if meaning in (UNLABELED, IGNORE):
            continue
        for name in (meaning,) if isinstance(meaning, str) else meaning:
            yield f"value {value}", name
    if not isinstance(declaration.exhaustive, bool):
        for name in declaration.exhaustive:
            yield "exhaustive", name
    for name in declaration.absent:
        yield "absent", name


# ---------------------------------------------------------------------------------- the command
def format_summary(report: DatasetReport) -> str:
    """Number of images and, per mask value, its meaning, pixels, share and images."""
    layout = report.layout
    if layout is None:
        return f"{report.yaml_path}: unreadable"
    lines = [f"{report.yaml_path}: dataset {layout.name!r}, {report.num_images} image(s)"]
    if not report.decoded or layout.declaration is None:
        return "\n".join(lines)
    declared = layout.declaration.values
    present = {int(v) for v in np.flatnonzero(report.pixel_counts)}
    total = max(int(report.pixel_counts.sum()), 1)
    lines.append(f"  {'value':>5}  {'meaning':<24} {'pixels':>12} {'share':>7} {'images':>7}")
    for value in sorted(set(declared) | present):
        meaning = declared.get(value, "(undeclared)")
        meaning = meaning if isinstance(meaning, str) else " | ".join(meaning)
        pixels = int(report.pixel_counts[value])
        lines.append(
            f"  {value:>5}  {meaning:<24} {pixels:>12,} {pixels / total:>7.1%} "
            f"{int(report.image_counts[value]):>7}"
        )
    return "\n".join(lines)


def duplicate_name_problems(reports: Sequence[DatasetReport]) -> list[Problem]:
    """Datasets used together need distinct names (the membership table is keyed by them)."""
    by_name: dict[str, list[str]] = {}
    for report in reports:
        if report.layout is not None:
            by_name.setdefault(report.layout.name, []).append(str(report.yaml_path))
    return [
        Problem(paths[1], f"dataset name {name!r} is also used by {paths[0]}; set 'name:'")
        for name, paths in by_name.items()
        if len(paths) > 1
    ]


def check_command(
    yaml_paths: Sequence[str | Path],
    classes: Sequence[str] | None = None,
    transition: Transition | None = None,
    out: TextIO | None = None,
) -> int:
    """Check datasets, print a summary of each and every problem as ``path: message``.

    Returns:
        0 if every dataset is clean, 1 otherwise.
    """
    out = out or sys.stdout  # resolved per call, so that redirected output is honoured
    reports = [inspect_dataset(path, classes, transition) for path in yaml_paths]
    shared = duplicate_name_problems(reports)
    for report in reports:
        print(format_summary(report), file=out)
        for problem in report.problems:
            print(problem, file=out)
    for problem in shared:
        print(problem, file=out)
    count = sum(len(r.problems) for r in reports) + len(shared)
    if count:
        print(f"{count} problem(s) in {len(reports)} dataset(s)", file=out)
        return 1
    print(f"{len(reports)} dataset(s) OK", file=out)
    return 0
