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

from incremental.constants import NUM_MASK_VALUES
from incremental.data.core import DatasetError, Problem
from incremental.data.folders.findings import (
    check_pair,
    class_name_problems,
    empty_class_findings,
    size_outlier_warnings,
    subfolder_warnings,
)
from incremental.data.folders.layout import FilePairs, FolderLayout, pair_files, read_layout
from incremental.labels import Transition

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
        warnings: what is worth knowing but does not stop training (images read rotated by
            their EXIF orientation, image files in sub-folders, size outliers, a declared
            class with no pixel).
        image_sizes: (width, height) of each readable image, as displayed.
        decoded: whether the files were decoded (counts are zero otherwise).
    """

    yaml_path: Path
    layout: FolderLayout | None = None
    pairs: FilePairs = field(default_factory=lambda: FilePairs((), (), ()))
    pixel_counts: np.ndarray = field(default_factory=lambda: _zero_counts())
    image_counts: np.ndarray = field(default_factory=lambda: _zero_counts())
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
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
    report.warnings += subfolder_warnings(layout.images_dir)
    if decode:
        declared = None if layout.declaration is None else frozenset(layout.declaration.values)
        pairs = zip(report.pairs.images, report.pairs.masks, strict=True)
        for checked in _map(lambda p: check_pair(*p, declared), pairs, workers):
            report.problems += checked.problems
            report.warnings += checked.warnings
            if checked.image_size is not None:
                report.image_sizes.append(checked.image_size)
            if checked.counts is not None:
                report.pixel_counts += checked.counts
                report.image_counts += checked.counts > 0
        report.decoded = True
        report.warnings += size_outlier_warnings(report)
        if layout.declaration is not None:
            empty, soft = empty_class_findings(report, layout.declaration, transition)
            report.problems += empty
            report.warnings += soft
    return report


def _map(function: Callable, items: Iterable, workers: int | None) -> Iterator:
    """``map`` over threads, results in input order (so problems come sorted by stem)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1:
        return map(function, items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return iter(list(pool.map(function, items)))


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
        for warning in report.warnings:
            print(warning, file=out)
    for problem in shared:
        print(problem, file=out)
    count = sum(len(r.problems) for r in reports) + len(shared)
    if count:
        print(f"{count} problem(s) in {len(reports)} dataset(s)", file=out)
        return 1
    print(f"{len(reports)} dataset(s) OK", file=out)
    return 0
