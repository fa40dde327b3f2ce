"""Step 1 of a paper benchmark (VOC, ADE20K) as a :class:`Scenario`.

The old model trains on step 0's images; step 1 trains on step 1's. Model selection needs
labels the test split must not provide, so a deterministic share of the training images is held
out as validation, labeled with every class seen so far (the raw masks are complete), and
removed from both steps' training sets. The paper's evaluation split (VOC/ADE ``val``) is the
test split, as in the papers.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from incremental.data.protocols import (
    PaperStepSource,
    class_names,
    eval_declaration,
    paper_step_datasets,
    seen_classes,
    step_lut,
    task_steps,
)
from incremental.data.scenario import Scenario


def _held_out(stem: str, fraction: float) -> bool:
    """Stable per-image draw: the same images are held out on every machine and run."""
    return (zlib.crc32(stem.encode()) % 10_000) < fraction * 10_000


def _subset(source: PaperStepSource, keep: bool, fraction: float) -> PaperStepSource:
    stems = source.base.stems
    indices = [i for i in source.indices if _held_out(stems[i], fraction) == keep]
    return PaperStepSource(source.base, indices, source.lut, source.declaration)


def build_paper_scenario(
    name: str,
    dataset: str,
    root: str | Path,
    task: str,
    mode: str = "overlap",
    val_fraction: float = 0.1,
    cache_dir: str | Path | None = None,
) -> Scenario:
    """Steps 0 and 1 of ``task`` on ``dataset`` at ``root`` (two-step tasks only)."""
    steps = task_steps(dataset, task)
    if len(steps) != 2:
        raise ValueError(
            f"scenario {name!r}: task {task!r} has {len(steps)} steps; the runner trains one "
            "step from the old model, so use a two-step task (voc 19-1, 15-5, ade 100-50, "
            "50-50) or run later steps from the previous step's model file"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"scenario {name!r}: val_fraction must be in (0, 1)")
    step0 = paper_step_datasets(dataset, root, task, 0, mode, cache_dir=cache_dir)
    step1 = paper_step_datasets(dataset, root, task, 1, mode, cache_dir=cache_dir)
    num_classes = len(class_names(dataset))

    def validation(step: int) -> PaperStepSource:
        seen = seen_classes(dataset, task, step)
        pool = step0.train if step == 0 else step1.train
        everything = sorted(set(step0.train.indices) | set(pool.indices))
        source = PaperStepSource(
            pool.base,
            everything,
            step_lut(seen, num_classes),
            eval_declaration(dataset, task, step, "heldout"),
        )
        held_out = _subset(source, True, val_fraction)
        if len(held_out) == 0:
            raise ValueError(
                f"scenario {name!r}: val_fraction={val_fraction} holds out no image of step "
                f"{step}; raise it"
            )
        return held_out

    return Scenario(
        name=name,
        transition=step1.transition,
        old_train=_subset(step0.train, False, val_fraction),
        new_train=_subset(step1.train, False, val_fraction),
        val=validation(1),
        test=step1.eval,
        old_val=validation(0),
        info={**step1.info, "val_fraction": val_fraction},
    )
