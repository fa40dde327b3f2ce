"""The steps of a paper benchmark (VOC, ADE20K) as :class:`Scenario` objects.

The old model trains on step 0's images; step t trains on step t's, from step t-1's model.
Model selection needs labels the test split must not provide, so a deterministic share of the
training images is held out as validation, labeled with every class seen so far (the raw masks
are complete), and removed from every step's training set. The paper's evaluation split
(VOC/ADE ``val``) is the test split, as in the papers.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from incremental.data.paper.protocols import (
    PaperStepSource,
    eval_declaration,
    paper_step_datasets,
    step_lut,
)
from incremental.data.paper.tasks import class_names, seen_classes, task_steps
from incremental.data.scenario import Scenario


def _held_out(stem: str, fraction: float) -> bool:
    """Stable per-image draw: the same images are held out on every machine and run."""
    return (zlib.crc32(stem.encode()) % 10_000) < fraction * 10_000


def _subset(source: PaperStepSource, keep: bool, fraction: float) -> PaperStepSource:
    stems = source.base.stems
    indices = [i for i in source.indices if _held_out(stems[i], fraction) == keep]
    return PaperStepSource(source.base, indices, source.lut, source.declaration)


def build_paper_scenarios(
    name: str,
    dataset: str,
    root: str | Path,
    task: str,
    mode: str = "overlap",
    val_fraction: float = 0.1,
    cache_dir: str | Path | None = None,
) -> list[Scenario]:
    """Every step t >= 1 of ``task`` on ``dataset`` at ``root``, one scenario each.

    Step t's old images (for replay) are step 0's, declared for step t: from step 2 on, their
    background may hide any class added since step 0, so 0 reads as unlabeled. From step 2 on,
    "new" classes in the scores are all classes added after step 0, as the papers report them.
    """
    steps = task_steps(dataset, task)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"scenario {name!r}: val_fraction must be in (0, 1)")
    num_classes = len(class_names(dataset))
    step0 = paper_step_datasets(dataset, root, task, 0, mode, cache_dir=cache_dir)
    later = [
        paper_step_datasets(dataset, root, task, t, mode, cache_dir=cache_dir)
        for t in range(1, len(steps))
    ]

    def validation(step: int) -> PaperStepSource:
        """Held-out training images of steps 0..step, labeled with every class seen by then."""
        pools = [step0.train, *(p.train for p in later[:step])]
        indices = sorted(set().union(*(p.indices for p in pools)))
        source = PaperStepSource(
            step0.train.base,
            indices,
            step_lut(seen_classes(dataset, task, step), num_classes),
            eval_declaration(dataset, task, step, "heldout"),
        )
        held_out = _subset(source, True, val_fraction)
        if len(held_out) == 0:
            raise ValueError(
                f"scenario {name!r}: val_fraction={val_fraction} holds out no image of step "
                f"{step}; raise it"
            )
        return held_out

    def fully_labeled(source: PaperStepSource, step: int, what: str) -> PaperStepSource:
        """The same images with every class seen by ``step`` labeled (the oracle's data)."""
        seen = step_lut(seen_classes(dataset, task, step), num_classes)
        declaration = eval_declaration(dataset, task, step, what)
        return PaperStepSource(source.base, source.indices, seen, declaration)

    old_val = validation(0)
    scenarios = []
    for t, step in enumerate(later, start=1):
        old_train = _subset(step0.train if t == 1 else step.replay[0], False, val_fraction)
        new_train = _subset(step.train, False, val_fraction)
        scenarios.append(
            Scenario(
                name=name if len(later) == 1 else f"{name}@step{t}",
                transition=step.transition,
                # Step 1 replays step 0's images in old labels (they also train the old
                # model); later steps need them declared for that step (see docstring).
                old_train=old_train,
                new_train=new_train,
                old_train_full=fully_labeled(old_train, t, "old-train-full"),
                new_train_full=fully_labeled(new_train, t, "new-train-full"),
                val=validation(t),
                test=step.eval,
                old_val=old_val,
                info={**step.info, "val_fraction": val_fraction},
                report_new_classes=tuple(c for p in later[:t] for c in p.transition.new_classes),
            )
        )
    return scenarios
