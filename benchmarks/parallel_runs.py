"""Independent runs side by side: ``--jobs N`` single-threaded processes against the runner in
one process at torch's default thread count, on the same grid, in the same benchmark run.

The grid: one scenario, two strategies, four seeds, step 1 only (the old models are trained
first, once, and cached: both measured runs read them). Each measured run is a fresh
``python -m experiments.run`` process; the order alternates over rounds; wall times per round
and their medians are printed with the ratio.

    python -m benchmarks.parallel_runs [--jobs 2] [--rounds 2] [--seeds 0,1,2,3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GRID = {
    "name": "parallel-benchmark",
    "scenarios": ["fashion-new-class"],
    "strategies": ["finetune", "candidate-sets"],
    "wandb": "disabled",
    "model": {"name": "small-unet"},
    "train_old": {"epochs": 1, "batch_size": 16, "progress_bar": False},
    "train": {"epochs": 2, "epoch_size": 320, "batch_size": 16, "progress_bar": False},
    "scenario_overrides": {
        "fashion": {"sizes": {"old_train": 320, "new_train": 320, "val": 64, "test": 64}}
    },
}


def run(config: Path, out: Path, seeds: str, jobs: int) -> float:
    """Seconds of one experiment in a fresh process."""
    command = [sys.executable, "-m", "experiments.run", str(config), "--output", str(out),
               "--seeds", seeds, "--jobs", str(jobs), "--overwrite"]  # fmt: skip
    if jobs == 1:  # the baseline: one process at every core (`threads` defaults to 1)
        command += ["--set", f"threads={os.cpu_count() or 1}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, env=dict(os.environ))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2,3")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = work / "grid.yaml"
        config.write_text(yaml.safe_dump({**GRID, "cache_dir": str(work / "cache")}))
        run(config, work / "warm", args.seeds, args.jobs)  # trains and caches the old models
        times: dict[str, list[float]] = {"sequential": [], "parallel": []}
        for r in range(args.rounds):
            order = ["sequential", "parallel"] if r % 2 == 0 else ["parallel", "sequential"]
            for name in order:
                jobs = 1 if name == "sequential" else args.jobs
                times[name].append(run(config, work / name, args.seeds, jobs))
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(args.seeds.split(','))} seeds x 2 strategies, step 1 only; {os.cpu_count()} cores")
    print(f"sequential (1 process, {os.cpu_count()} threads): "
          f"{', '.join(f'{t:.0f}' for t in times['sequential'])} s")  # fmt: skip
    print(f"parallel ({args.jobs} single-threaded jobs): "
          f"{', '.join(f'{t:.0f}' for t in times['parallel'])} s")  # fmt: skip
    speedup = medians["sequential"] / medians["parallel"]
    print(f"median: sequential {medians['sequential']:.0f} s, parallel {medians['parallel']:.0f} s,"
          f" {speedup:.2f}x faster in parallel")  # fmt: skip
    return {**medians, "speedup": speedup}


if __name__ == "__main__":
    main()
