"""The parallel runner's scheduling (``experiments.parallel.run_parallel``): a task starts once
the task it needs has finished, and the other jobs do not wait for it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from experiments.parallel import Task, run_parallel


def train_old_model(marker: str, beside: str | None = None, linger: float = 0.0) -> str:
    """Stands for an old model: leaves a file that its runs need. With ``beside``, it first
    waits (up to a minute) for that file, which only a task running at the same time writes,
    then ``linger`` seconds more."""
    if beside is not None:
        waited = time.monotonic()
        while not Path(beside).exists():
            if time.monotonic() - waited > 60:
                raise RuntimeError("no other task ran while the old model trained")
            time.sleep(0.05)
        time.sleep(linger)
    Path(marker).write_text("trained")
    return "old"


def run_on_old_model(marker: str) -> str:
    """Stands for a run that loads the old model: fails if it started before it existed."""
    if not Path(marker).exists():
        raise RuntimeError("started before its old model was trained")
    return "needs the old model"


def independent_run(leaves: str | None = None) -> str:
    if leaves is not None:
        Path(leaves).write_text("ran")
    return "independent"


@pytest.mark.slow
def test_a_run_waits_for_its_old_model_while_the_other_job_goes_on(tmp_path):
    marker, beside = str(tmp_path / "old-model"), str(tmp_path / "free-ran")
    tasks = [
        # finishes only once `free` has run, and 2 s later: `free`'s result, already on its
        # way back, is yielded first even on a loaded machine (with no margin it raced `old`).
        Task("old", train_old_model, (marker, beside, 2.0)),
        Task("needs", run_on_old_model, (marker,), after="old"),  # before `free` in priority
        Task("free", independent_run, (beside,)),
    ]
    # The second job runs `free` while `old` trains (a phase barrier would make `old` wait for
    # it in vain and fail); `needs` starts only after `old` (else it raises).
    order = [task.name for task, _ in run_parallel(tasks, jobs=2)]
    assert order == ["free", "old", "needs"]


@pytest.mark.slow
def test_one_job_runs_tasks_in_priority_order_as_they_become_ready(tmp_path):
    marker = str(tmp_path / "old-model")
    tasks = [
        Task("old", train_old_model, (marker,)),
        Task("free", independent_run, ()),
        Task("needs", run_on_old_model, (marker,), after="old"),
    ]
    finished = [(task.name, result) for task, result in run_parallel(tasks, jobs=1)]
    # Once `old` is done, `free` and `needs` are both ready: the given order decides.
    assert finished == [("old", "old"), ("free", "independent"), ("needs", "needs the old model")]


def test_a_task_that_could_never_start_is_refused():
    with pytest.raises(ValueError, match=r"not given: \['missing'\]"):
        list(run_parallel([Task("a", independent_run, (), after="missing")], jobs=1))
    cycle = [Task("a", independent_run, (), after="b"), Task("b", independent_run, (), after="a")]
    with pytest.raises(ValueError, match="cycle"):
        list(run_parallel(cycle, jobs=2))


def failing_run() -> str:
    raise RuntimeError("this run failed")


@pytest.mark.slow
def test_a_failure_stops_the_rest_after_the_runs_finished_before_it():
    tasks = [Task("fails", failing_run, ()), Task("free", independent_run, ())]
    seen = []
    with pytest.raises(RuntimeError, match="this run failed"):
        for task, _ in run_parallel(tasks, jobs=1):
            seen.append(task.name)
    assert seen == []  # one job: `fails` ran first and stopped the rest
    tasks = [Task("free", independent_run, ()), Task("fails", failing_run, ())]
    with pytest.raises(RuntimeError, match="this run failed"):
        for task, _ in run_parallel(tasks, jobs=1):
            seen.append(task.name)
    assert seen == ["free"]


def failing_run_that_leaves(marker: str) -> str:
    Path(marker).write_text("failed")
    raise RuntimeError("this run failed")


@pytest.mark.slow
def test_a_run_in_flight_at_a_failure_finishes_and_is_kept(tmp_path, caplog):
    failed, later = str(tmp_path / "failed"), str(tmp_path / "later-ran")
    tasks = [
        # Finishes only once `fails` has failed (plus a second for the failure to reach this
        # process): it is in flight at the failure.
        Task("beside", train_old_model, (str(tmp_path / "beside-done"), failed, 1.0)),
        Task("fails", failing_run_that_leaves, (failed,)),
        Task("later", independent_run, (later,)),  # not started before the failure
    ]
    seen = []
    with pytest.raises(RuntimeError, match="this run failed"):
        for task, _ in run_parallel(tasks, jobs=2):
            # Was the failure said before this task's result came (not only at the end)?
            seen.append((task.name, "fails failed: this run failed" in caplog.text))
    assert seen == [("beside", True)]  # its work is yielded (the runner writes it), not dropped
    assert "1 task(s) in flight finish; no new one starts" in caplog.text
    assert not Path(later).exists()  # nothing new starts after a failure


def dying_run() -> str:
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    return "never"


@pytest.mark.slow
def test_a_worker_that_dies_is_named_by_the_tasks_it_ran():
    with pytest.raises(RuntimeError, match=r"worker process died .* \['dies'\]"):
        list(run_parallel([Task("dies", dying_run, ())], jobs=1))


def thread_count() -> int:
    import torch

    return torch.get_num_threads()


@pytest.mark.slow
def test_workers_compute_with_the_given_thread_count():
    for threads in (1, 2):
        counts = [r for _, r in run_parallel([Task("t", thread_count, ())], 1, threads=threads)]
        assert counts == [threads]


def test_auto_jobs_divide_the_cores_by_the_threads(monkeypatch):
    from experiments.parallel import default_jobs

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert default_jobs("cpu", False) == 8
    assert default_jobs("cpu", False, threads=2) == 4
    assert default_jobs("cpu", False, threads=16) == 1
    assert default_jobs("cpu", True, threads=2) == 1
