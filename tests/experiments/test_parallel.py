"""The parallel runner's scheduling (``experiments.parallel.run_parallel``): a task starts once
the task it needs has finished, and the other jobs do not wait for it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments.parallel import Task, run_parallel


def train_old_model(marker: str, seconds: float) -> str:
    """Stands for an old model: slow, and leaves a file that its runs need."""
    time.sleep(seconds)
    Path(marker).write_text("trained")
    return "old"


def run_on_old_model(marker: str) -> str:
    """Stands for a run that loads the old model: fails if it started before it existed."""
    if not Path(marker).exists():
        raise RuntimeError("started before its old model was trained")
    return "needs the old model"


def independent_run() -> str:
    return "independent"


@pytest.mark.slow
def test_a_run_waits_for_its_old_model_while_the_other_job_goes_on(tmp_path):
    marker = str(tmp_path / "old-model")
    tasks = [
        Task("old", train_old_model, (marker, 5.0)),
        Task("needs", run_on_old_model, (marker,), after="old"),  # before `free` in priority
        Task("free", independent_run, ()),
    ]
    order = [task.name for task, _ in run_parallel(tasks, jobs=2)]
    # The second job runs `free` while `old` trains (a phase barrier would finish `old` first);
    # `needs` starts only after `old` (else it raises).
    assert order == ["free", "old", "needs"]


@pytest.mark.slow
def test_one_job_runs_tasks_in_priority_order_as_they_become_ready(tmp_path):
    marker = str(tmp_path / "old-model")
    tasks = [
        Task("old", train_old_model, (marker, 0.0)),
        Task("free", independent_run, ()),
        Task("needs", run_on_old_model, (marker,), after="old"),
    ]
    results = {task.name: result for task, result in run_parallel(tasks, jobs=1)}
    assert results == {"old": "old", "free": "independent", "needs": "needs the old model"}


def test_a_task_that_could_never_start_is_refused():
    with pytest.raises(ValueError, match=r"not given: \['missing'\]"):
        list(run_parallel([Task("a", independent_run, (), after="missing")], jobs=1))
    cycle = [Task("a", independent_run, (), after="b"), Task("b", independent_run, (), after="a")]
    with pytest.raises(ValueError, match="cycle"):
        list(run_parallel(cycle, jobs=2))
