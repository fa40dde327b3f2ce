"""Independent runs side by side: one process per run, each of a set thread count (one by
default: ``threads`` in the experiment's config).

On a small CPU, two single-threaded processes train about twice as fast as one process with two
threads (a small model's step barely parallelises across threads, and a loaded machine trained
some 16x slower at the default thread count). Runs of one experiment are independent once
their old model exists: a task may name the task it needs (a chain its old model), and starts
as soon as that one has finished, while the other jobs go on with whatever else is ready (no
core waits for the last old model of the grid). Each worker rebuilds the experiment from its
resolved config; results come back to the main process, which writes them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def default_jobs(accelerator: str, multi_device: bool, threads: int = 1) -> int:
    """``jobs: auto``: the number of cores on the CPU divided by each run's ``threads``; one
    process on a GPU or with several devices (they would share them)."""
    if multi_device or accelerator in ("gpu", "cuda", "mps"):
        return 1
    if accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    return max(1, (os.cpu_count() or 1) // threads)


def _start_worker(threads: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    import torch

    torch.set_num_threads(threads)
    if initializer is not None:
        initializer(*initargs)


@dataclass(frozen=True, eq=False)
class Task:
    """``function(*args)`` in a worker, once the task named ``after`` (if any) has finished."""

    name: Hashable
    function: Callable[..., Any]
    args: tuple
    after: Hashable | None = None


def run_parallel(
    tasks: Iterable[Task],
    jobs: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    threads: int = 1,
) -> Iterator[tuple[Task, Any]]:
    """Every task in ``jobs`` processes of ``threads`` threads each; yields ``(task, result)``
    as they finish. The first error stops new tasks from starting; the tasks already running
    beside it finish and are yielded (their work is kept), then the error is raised.

    At most ``jobs`` tasks are in flight; when one finishes, the first task in the given order
    whose ``after`` has finished starts (so the order is the priority). ``initializer(*initargs)``
    runs once in each process before its first task (``initargs`` are pickled once per process,
    not once per task).

    Raises:
        ValueError: a task waits for a task that is not given, or tasks wait in a cycle (they
            would never start).
    """
    pending = list(tasks)
    unknown = {t.after for t in pending if t.after is not None} - {t.name for t in pending}
    if unknown:
        raise ValueError(f"tasks wait for tasks that are not given: {sorted(map(str, unknown))}")
    # A worker reads OMP_NUM_THREADS when it imports torch: set before the processes start.
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    context = multiprocessing.get_context("spawn")
    finished: set[Hashable] = set()
    running: dict[Future, Task] = {}
    try:
        with ProcessPoolExecutor(
            jobs,
            mp_context=context,
            initializer=_start_worker,
            initargs=(threads, initializer, initargs),
        ) as pool:
            try:
                first_failure: BaseException | None = None
                while (pending and first_failure is None) or running:
                    ready = [t for t in pending if t.after is None or t.after in finished]
                    if first_failure is None:  # after a failure, nothing new starts
                        for task in ready[: jobs - len(running)]:
                            pending.remove(task)
                            running[pool.submit(task.function, *task.args)] = task
                    if not running:  # tasks left, none ready, none that could make them so
                        waiting = sorted(str(t.name) for t in pending)
                        raise ValueError(f"tasks wait for each other in a cycle: {waiting}")
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    failed = [f for f in done if f.exception() is not None]
                    if failed and first_failure is None:
                        in_flight = [str(t.name) for t in running.values()]
                        first_failure = failure(failed[0].exception(), in_flight)
                    lost = [running.pop(f) for f in failed]
                    for future, task in zip(failed, lost, strict=True):  # said at once
                        log.error("%s failed: %s", task.name, future.exception())
                    if failed:
                        log.error("%d task(s) in flight finish; no new one starts", len(running))
                    for future in done - set(failed):
                        task = running.pop(future)
                        finished.add(task.name)
                        yield task, future.result()
                # The tasks in flight at a failure were let finish and yielded (their work is
                # kept: a resume skips them); the first error is raised now.
                if first_failure is not None:
                    raise first_failure
            except BaseException as error:
                if first_failure is not None and error is not first_failure:  # not lost
                    log.error("stopped while tasks ran after a failure: %s", first_failure)
                for future in running:
                    future.cancel()
                raise
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def failure(error: BaseException, in_flight: list[str]) -> BaseException:
    """The error to raise for the first failed task: its own or, when a worker process died
    (killed for memory or by a signal: every task in flight then fails alike, and the pool's
    error names none), one that names the tasks that were in flight."""
    if not isinstance(error, BrokenProcessPool):
        return error
    named = RuntimeError(
        f"a worker process died (killed for memory or by a signal?) while these tasks ran: "
        f"{in_flight}; their work is lost"
    )
    named.__cause__ = error
    return named
