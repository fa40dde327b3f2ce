"""The class-incremental benchmarks of MiB (Cermelli et al., CVPR 2020) on VOC 2012 and ADE20K.

A *task* such as VOC ``15-1`` is a list of steps, each a list of class indices in the dataset's
label space (mask value = class index), added in index order as MiB does. For step ``t``:

- **training images** are filtered as MiB's ``filter_images``: ``overlap`` keeps images showing
  a class of step ``t``; ``disjoint`` also drops images showing a class of a later step.
- **training labels** keep the step's classes; every other class becomes 0 and 255 stays
  ignore. Value 0 is declared ``unlabeled`` (background or an old class: MiB's unknown), so the
  candidate-set table reads it as "anything but the step's classes" (DESIGN §2). Step 0 declares
  0 as the background in the old vocabulary.
- **evaluation labels** keep every class seen so far; later classes become background. As in
  MiB's test set, evaluation images are those showing at least one seen class.

Masks are never rewritten on disk: :class:`PaperStepSource` maps raw values through a 256-entry
lookup table when a sample is loaded, and carries the matching label declaration.

The tasks themselves (class orders, steps, transitions) are :mod:`incremental.data.paper.tasks`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from incremental.constants import IGNORE_INDEX, NUM_MASK_VALUES
from incremental.data.core import SegmentationSource
from incremental.data.paper.tasks import (
    MODES,
    SOURCES,
    Mode,
    check_step,
    class_names,
    seen_classes,
    step_transition,
)
from incremental.labels import IGNORE, UNLABELED, LabelDeclaration, Transition

#: Values that never count as a class when filtering images (MiB's ``[0, 255]``).
_NOT_A_CLASS = frozenset({0, IGNORE_INDEX})


# --------------------------------------------------------------------------------------------
# Image filtering
# --------------------------------------------------------------------------------------------


def filter_indices(
    label_sets: Sequence[set[int]],
    step_classes: Iterable[int],
    seen_classes: Iterable[int],
    mode: Mode = "overlap",
) -> list[int]:
    """Indices of the images a step trains on (MiB's ``filter_images``).

    Args:
        label_sets: per image, the label values present in its raw mask.
        step_classes: classes of the step; an image must show at least one of them.
        seen_classes: classes of this and earlier steps; ``disjoint`` drops images showing any
            other class.
        mode: ``"overlap"`` or ``"disjoint"``.

    Values 0 and 255 never count as classes.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {list(MODES)}")
    wanted = set(step_classes) - _NOT_A_CLASS
    allowed = set(seen_classes) | wanted | _NOT_A_CLASS
    kept = []
    for i, labels in enumerate(label_sets):
        if not labels & wanted:
            continue
        if mode == "disjoint" and not labels <= allowed:
            continue
        kept.append(i)
    return kept


class _MaskSource(Protocol):
    stems: list[str]
    declaration: LabelDeclaration

    def __len__(self) -> int: ...

    def load_mask(self, index: int) -> np.ndarray: ...


def compute_label_sets(source: _MaskSource, cache_dir: str | Path | None = None) -> list[set[int]]:
    """Per image, the set of label values in its raw mask.

    Reading every mask of ADE20K takes minutes, so with ``cache_dir`` the sets are stored in
    ``<cache_dir>/<dataset name>-label-sets.json`` and reused while the image list is the same.
    """
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{source.declaration.name}-label-sets.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("stems") == list(source.stems):
                return [set(labels) for labels in cached["label_sets"]]
    sets = [set(np.unique(source.load_mask(i)).tolist()) for i in range(len(source))]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {"stems": list(source.stems), "label_sets": [sorted(s) for s in sets]}
        path.write_text(json.dumps(content, separators=(",", ":")))
    return sets


# --------------------------------------------------------------------------------------------
# Label remapping and declarations
# --------------------------------------------------------------------------------------------


def step_lut(keep: Iterable[int], num_classes: int) -> np.ndarray:
    """A (256,) uint8 lookup table: kept classes map to themselves, other classes to 0.

    255 stays ignore; values that are no class of the dataset (``num_classes``..254, absent in
    the real annotations) become ignore too rather than silently joining the background.
    """
    lut = np.full(NUM_MASK_VALUES, IGNORE_INDEX, dtype=np.uint8)
    lut[:num_classes] = 0
    for c in keep:
        if not 0 <= c < num_classes:
            raise ValueError(f"class {c} is not in 0..{num_classes - 1}")
        lut[c] = c
    return lut


def _declaration(
    name: str, classes: Sequence[int], names: Sequence[str], zero: str, vocabulary: str
) -> LabelDeclaration:
    values: dict[int, str] = {0: zero}
    values.update({c: names[c] for c in classes if c != 0})
    values[IGNORE_INDEX] = IGNORE
    return LabelDeclaration(name, values, vocabulary=vocabulary, exhaustive=True)


def train_declaration(dataset: str, task: str, step: int) -> LabelDeclaration:
    """What step ``step``'s training masks (after :func:`step_lut`) mean.

    Step 0: old vocabulary, 0 = background (MiB trains later classes as background there).
    Later steps: student vocabulary, 0 = ``unlabeled``, the step's classes exhaustive, so 0
    stands for the background and every old class.
    """
    classes = check_step(dataset, task, step)[step]
    name = f"{dataset}-{task}-step{step}-train"
    if step == 0:
        return _declaration(name, classes, class_names(dataset), "background", "old")
    return _declaration(name, classes, class_names(dataset), UNLABELED, "student")


def replay_declaration(dataset: str, task: str, labeled_step: int, step: int) -> LabelDeclaration:
    """Step ``labeled_step``'s training masks as old images replayed at a later ``step``.

    Only ``labeled_step``'s classes are labeled there, so 0 = ``unlabeled`` stands for every
    other class seen up to ``step`` (classes of other old steps and the new ones included).
    """
    steps = check_step(dataset, task, step)
    if not 0 <= labeled_step < step:
        raise ValueError(f"labeled_step must be in 0..{step - 1}, got {labeled_step}")
    name = f"{dataset}-{task}-step{step}-replay{labeled_step}"
    return _declaration(name, steps[labeled_step], class_names(dataset), UNLABELED, "student")


def eval_declaration(dataset: str, task: str, step: int, split: str = "val") -> LabelDeclaration:
    """Evaluation masks at ``step``: every seen class labeled, 0 = background."""
    classes = seen_classes(dataset, task, step)
    name = f"{dataset}-{task}-step{step}-eval-{split}"
    return _declaration(name, classes, class_names(dataset), "background", "student")


class PaperStepSource:
    """A subset of a raw source whose masks pass through a lookup table.

    Args:
        base: the raw source (mask value = dataset class index).
        indices: which of ``base``'s samples, in order.
        lut: (256,) uint8, raw value -> this step's value.
        declaration: what the mapped values mean.
    """

    def __init__(
        self,
        base: SegmentationSource,
        indices: Sequence[int],
        lut: np.ndarray,
        declaration: LabelDeclaration,
    ) -> None:
        if lut.shape != (NUM_MASK_VALUES,) or lut.dtype != np.uint8:
            raise ValueError(f"lut must be ({NUM_MASK_VALUES},) uint8, got {lut.shape} {lut.dtype}")
        bad = [i for i in indices if not 0 <= i < len(base)]
        if bad:
            raise ValueError(f"indices {bad[:5]} out of range for {len(base)} samples")
        self.base = base
        self.indices = list(indices)
        self.lut = lut
        self.declaration = declaration

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def stems(self) -> list[str]:
        """The selected samples' names (the base source must have ``stems``)."""
        names = self.base.stems  # type: ignore[attr-defined]
        return [names[i] for i in self.indices]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and mapped mask (H, W) uint8."""
        image, mask = self.base.load(self.indices[index])
        return image, self.lut[mask]


# --------------------------------------------------------------------------------------------
# One step of a benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class PaperStep:
    """What a runner needs for one step of a paper benchmark.

    Attributes:
        transition: teacher classes -> student classes (:func:`step_transition`).
        train: the step's training images, filtered and remapped.
        eval: the evaluation split, every seen class labeled, later classes as background.
        replay: per earlier step ``s``, its training images as labeled then (only step ``s``'s
            classes), declared for this step; for runs that mix old images in.
        info: benchmark parameters and sizes, worth reporting beside results.
    """

    transition: Transition
    train: PaperStepSource
    eval: PaperStepSource
    replay: list[PaperStepSource] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _non_empty(source: PaperStepSource, why: str) -> PaperStepSource:
    if len(source) == 0:
        raise ValueError(f"{source.declaration.name}: no images {why}")
    return source


def paper_step_datasets(
    dataset: str,
    root: str | Path,
    task: str,
    step: int,
    mode: Mode = "overlap",
    split: str = "val",
    *,
    cache_dir: str | Path | None = None,
) -> PaperStep:
    """The sources of one step of a MiB benchmark, read from ``root``.

    Args:
        dataset: ``"voc"`` (``root`` = the ``VOC2012`` folder) or ``"ade"`` (``root`` = the
            ``ADEChallengeData2016`` folder).
        task: a name of ``TASKS[dataset]`` (e.g. ``"15-1"``, ``"100-50"``).
        step: 0 for base training, then 1, 2, ...
        mode: ``"overlap"`` or ``"disjoint"`` training-image filter.
        split: the evaluation split, ``"val"`` (MiB's test set) or ``"train"``.
        cache_dir: where to keep per-image label sets between runs (none: recompute).
    """
    steps = check_step(dataset, task, step)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {list(MODES)}")
    num_classes = len(class_names(dataset))
    seen = seen_classes(dataset, task, step)
    train_raw = SOURCES[dataset](root, "train")
    train_sets = compute_label_sets(train_raw, cache_dir)

    def step_source(labeled: int, declaration: LabelDeclaration) -> PaperStepSource:
        # Disjoint filtering is relative to what was seen when step `labeled` was trained.
        indices = filter_indices(
            train_sets, steps[labeled], seen_classes(dataset, task, labeled), mode
        )
        return PaperStepSource(
            train_raw, indices, step_lut(steps[labeled], num_classes), declaration
        )

    train = _non_empty(
        step_source(step, train_declaration(dataset, task, step)),
        f"in the {mode} training split show a class of step {step}: {steps[step]}",
    )
    replay = [step_source(s, replay_declaration(dataset, task, s, step)) for s in range(step)]
    eval_raw = SOURCES[dataset](root, split)
    eval_indices = filter_indices(compute_label_sets(eval_raw, cache_dir), seen, seen, "overlap")
    evaluation = _non_empty(
        PaperStepSource(
            eval_raw,
            eval_indices,
            step_lut(seen, num_classes),
            eval_declaration(dataset, task, step, split),
        ),
        f"in the {split!r} split show a class seen up to step {step}",
    )
    info = {
        "dataset": dataset,
        "task": task,
        "step": step,
        "mode": mode,
        "n_train": len(train),
        "n_eval": len(evaluation),
        "n_replay": [len(r) for r in replay],
    }
    return PaperStep(step_transition(dataset, task, step), train, evaluation, replay, info)
