"""The tasks of MiB (Cermelli et al., CVPR 2020) on VOC 2012 and ADE20K: which classes each step
adds, and the transition of each step.

A *task* such as VOC ``15-1`` is a list of steps, each a list of class indices in the dataset's
label space (mask value = class index), added in index order as MiB does (MiB's ``tasks.py``).

Example:
    >>> task_steps("voc", "15-1")[1:]
    [[16], [17], [18], [19], [20]]
    >>> step_transition("voc", "19-1", 1).new_classes
    ('tvmonitor',)
"""

from __future__ import annotations

from typing import Literal

from incremental.data.paper.ade import ADE_CLASSES, ADE20KSegmentation
from incremental.data.paper.voc import VOC_CLASSES, VOCSegmentation
from incremental.labels import Transition

Mode = Literal["overlap", "disjoint"]
MODES: tuple[str, ...] = ("overlap", "disjoint")
CLASSES: dict[str, tuple[str, ...]] = {"voc": VOC_CLASSES, "ade": ADE_CLASSES}
SOURCES = {"voc": VOCSegmentation, "ade": ADE20KSegmentation}


def _steps(first: int, step: int, num_classes: int) -> list[list[int]]:
    """Classes 0..first in step 0, then ``step`` classes at a time up to ``num_classes - 1``."""
    rest = range(first + 1, num_classes, step)
    return [list(range(first + 1))] + [list(range(s, min(s + step, num_classes))) for s in rest]


#: dataset -> task name -> steps (MiB's ``tasks.py``; ``offline`` is joint training).
TASKS: dict[str, dict[str, list[list[int]]]] = {
    "voc": {
        "offline": _steps(20, 1, 21),
        "19-1": _steps(19, 1, 21),
        "15-5": _steps(15, 5, 21),
        "15-1": _steps(15, 1, 21),
        "10-1": _steps(10, 1, 21),
    },
    "ade": {
        "offline": _steps(150, 1, 151),
        "100-50": _steps(100, 50, 151),
        "100-10": _steps(100, 10, 151),
        "50-50": _steps(50, 50, 151),
    },
}
#: Other names of the same tasks (MiB's own spelling).
TASK_ALIASES: dict[str, dict[str, str]] = {"voc": {"15-5s": "15-1"}, "ade": {"50": "50-50"}}


def class_names(dataset: str) -> tuple[str, ...]:
    """The dataset's classes in label order (index 0 = background)."""
    if dataset not in CLASSES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {list(CLASSES)}")
    return CLASSES[dataset]


def task_steps(dataset: str, task: str) -> list[list[int]]:
    """The steps of ``task``: one list of class indices per step (a fresh copy)."""
    class_names(dataset)
    tasks = TASKS[dataset]
    name = TASK_ALIASES[dataset].get(task, task)
    if name not in tasks:
        known = list(tasks) + list(TASK_ALIASES[dataset])
        raise ValueError(f"unknown {dataset} task {task!r}; known: {known}")
    return [list(classes) for classes in tasks[name]]


def check_step(dataset: str, task: str, step: int) -> list[list[int]]:
    steps = task_steps(dataset, task)
    if not 0 <= step < len(steps):
        raise ValueError(f"{dataset} task {task!r} has steps 0..{len(steps) - 1}; got step {step}")
    return steps


def seen_classes(dataset: str, task: str, step: int) -> list[int]:
    """Classes of steps 0..``step`` (old and current), in index order."""
    steps = check_step(dataset, task, step)
    return sorted(c for classes in steps[: step + 1] for c in classes)


def step_transition(dataset: str, task: str, step: int) -> Transition:
    """The transition of ``step``: old = background and earlier steps' classes, new = this
    step's, hidden under the background. Student class ``i`` is label value ``i``.

    Step 0 has no teacher: its transition keeps the step's classes unchanged (base training).
    """
    steps = check_step(dataset, task, step)
    names = class_names(dataset)
    if step == 0:
        return Transition(tuple(names[c] for c in steps[0]))
    old = sorted(c for classes in steps[:step] for c in classes)
    return Transition(
        old_classes=tuple(names[c] for c in old),
        new_classes=tuple(names[c] for c in steps[step]),
        hidden_under=names[0],
    )
