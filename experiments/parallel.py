"""Independent runs side by side: one single-threaded process per run.

On a small CPU, two single-threaded processes train about twice as fast as one process with two
threads (a small model's step barely parallelises across threads, and a loaded machine trained
some 16x slower at the default thread count). Runs of one experiment are independent once
their old model exists: old models first (one process per scenario and seed), then every
(scenario, seed, strategy) chain. Each worker rebuilds the experiment from its resolved config;
results come back to the main process, which writes them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def default_jobs(accelerator: str, multi_device: bool) -> int:
    """``jobs: auto``: the number of cores on the CPU; one process on a GPU or with several
    devices (they would share them)."""
    if multi_device or accelerator in ("gpu", "cuda", "mps"):
        return 1
    if accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    return max(1, os.cpu_count() or 1)


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    import torch

    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def run_parallel(
    function: Callable[..., Any],
    units: Iterable[tuple],
    jobs: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[tuple[tuple, Any]]:
    """``function(*unit)`` for every unit in ``jobs`` single-threaded processes; yields
    ``(unit, result)`` as they finish (the first error stops the rest and is raised).
    ``initializer(*initargs)`` runs once in each process before its first unit (``initargs``
    are pickled once per process, not once per unit)."""
    units = list(units)
    # A worker reads OMP_NUM_THREADS when it imports torch: set before the processes start.
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_start_worker, initargs=(initializer, initargs)
        ) as pool:
            futures = {pool.submit(function, *unit): unit for unit in units}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
