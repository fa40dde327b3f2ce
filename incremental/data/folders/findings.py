"""What the check looks for, file by file and over a whole dataset: unreadable or mis-sized
files, masks that are not label values, undeclared values, images read rotated by their EXIF
orientation, image files in sub-folders, size outliers, classes with no pixel, and class names
the experiment does not know."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from incremental.constants import IGNORE_INDEX, NUM_MASK_VALUES
from incremental.data.core import (
    DatasetError,
    Problem,
    decode,
    exif_orientation,
    image_mode_problem,
    mask_mode_problem,
    size_mismatch,
)
from incremental.data.folders.layout import IMAGE_SUFFIXES
from incremental.labels import IGNORE, UNLABELED, CandidateSetTable, LabelDeclaration, Transition

if TYPE_CHECKING:
    from incremental.data.folders.check import DatasetReport


#: An image whose longer side exceeds this many times the dataset's median is an outlier.
SIZE_OUTLIER_FACTOR = 4


def subfolder_warnings(images_dir: Path) -> list[Problem]:
    """Image files below sub-folders of ``images/``: not searched, said so."""
    if not images_dir.is_dir():
        return []
    nested = [
        p
        for sub in sorted(images_dir.iterdir())
        if sub.is_dir() and not sub.name.startswith(".")
        for p in sorted(sub.rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not nested:
        return []
    return [
        Problem(
            str(images_dir),
            f"warning: {len(nested)} image file(s) in sub-folders are not used (e.g. "
            f"{nested[0]}); only the folder's own files are read",
        )
    ]


def size_outlier_warnings(report: DatasetReport) -> list[Problem]:
    """Images far larger than the dataset's median (one such image in a batch of small ones
    makes the whole padded batch as large)."""
    if len(report.image_sizes) < 2:
        return []
    sides = np.array([max(w, h) for w, h in report.image_sizes])
    median = float(np.median(sides))
    warnings = []
    for path, (w, h) in zip(report.pairs.images, report.image_sizes, strict=False):
        if max(w, h) > SIZE_OUTLIER_FACTOR * median and max(w, h) > 256:
            warnings.append(
                Problem(
                    str(path),
                    f"warning: image {w}x{h} is far larger than the others (median longer "
                    f"side {median:.0f}); training shrinks images whose longer side exceeds "
                    "train.max_image_side",
                )
            )
    return warnings


def empty_class_findings(
    report: DatasetReport, declaration: LabelDeclaration, transition: Transition | None
) -> tuple[list[Problem], list[Problem]]:
    """Declared classes with no pixel in any mask: an error for the step's own classes in a
    dataset labeled for them (one with unlabeled values: it exists to teach them, and would
    teach nothing), a warning otherwise (a small evaluation set may miss a class)."""
    where = str(report.yaml_path)
    partial = UNLABELED in declaration.values.values()
    step = set(transition.step_classes) if transition is not None and partial else set()
    errors, warnings = [], []
    binary = (
        report.pixel_counts[IGNORE_INDEX] > 0 and report.pixel_counts[1:IGNORE_INDEX].sum() == 0
    )
    for value, meaning in sorted(declaration.values.items()):
        if meaning in (UNLABELED, IGNORE) or report.pixel_counts[value] > 0:
            continue
        names = [meaning] if isinstance(meaning, str) else list(meaning)
        message = (
            f"value {value} ({', '.join(names)}): no pixel in any of the {report.num_images} masks"
        )
        if binary:
            message += (
                f"; the masks hold only 0 and {IGNORE_INDEX}, and {IGNORE_INDEX} means 'ignore': "
                f"if {IGNORE_INDEX} marks the class, re-save the masks with value {value} there"
            )
        if step & set(names):
            errors.append(Problem(where, f"{message}: the step's class(es) would never be taught"))
        else:
            warnings.append(Problem(where, f"warning: {message}"))
    return errors, warnings


@dataclass
class PairCheck:
    problems: list[Problem]
    warnings: list[Problem]
    image_size: tuple[int, int] | None = None
    counts: np.ndarray | None = None


def check_pair(image_path: Path, mask_path: Path, declared: frozenset[int] | None) -> PairCheck:
    """Problems and warnings of one image-mask pair, the image's size as displayed and the
    mask's (256,) value counts if readable."""
    checked = PairCheck([], [])
    try:
        image = decode(image_path, "image")
        problem = image_mode_problem(image)
        if problem is not None:
            checked.problems.append(Problem(str(image_path), problem))
        size = image.size
        orientation = exif_orientation(image)
        if orientation != 1:
            if orientation in (5, 6, 7, 8):  # quarter turns: width and height swap
                size = size[::-1]
            checked.warnings.append(
                Problem(
                    str(image_path),
                    f"warning: EXIF orientation {orientation}: read as displayed (rotated or "
                    "mirrored); its mask must match the displayed view",
                )
            )
        checked.image_size = size
    except DatasetError as error:
        checked.problems += error.problems
    try:
        mask = decode(mask_path, "mask")
    except DatasetError as error:
        checked.problems += error.problems
        return checked
    mode_problem = mask_mode_problem(mask)
    if mode_problem is not None:
        checked.problems.append(Problem(str(mask_path), mode_problem))
        return checked
    if checked.image_size is not None and mask.size != checked.image_size:
        message = size_mismatch(checked.image_size, mask.size, image_path)
        checked.problems.append(Problem(str(mask_path), message))
    counts = np.bincount(np.asarray(mask).ravel(), minlength=NUM_MASK_VALUES)
    if declared is not None:
        undeclared = [int(v) for v in np.flatnonzero(counts) if int(v) not in declared]
        if undeclared:
            checked.problems.append(
                Problem(str(mask_path), _undeclared_message(undeclared, counts, declared))
            )
    checked.counts = counts
    return checked


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
