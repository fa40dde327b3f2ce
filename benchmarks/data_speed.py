"""Data loading vs training speed on the Fashion scenes (is loading the bottleneck?).

Prints samples/s of the DataModule's training loader (augmentation and collation included,
in the main process and with workers) next to samples/s of a training step of the tiny
model (student forward + backward + teacher forward), measured in the same run.

    python benchmarks/data_speed.py [--batches 30] [--workers 0,1]
"""

from __future__ import annotations

import argparse
import time

import torch

from experiments.config import load_scenario_config
from incremental.data import build_scenario
from incremental.data.datamodule import IncrementalDataModule
from incremental.models import create_model
from incremental.module import IncrementalSegmenter
from incremental.strategies import create_strategy
from incremental.workflow import build_step, step_data


def loader_rate(datamodule: IncrementalDataModule, batches: int) -> float:
    loader = iter(datamodule.train_dataloader())
    next(loader)  # worker start-up is not steady-state throughput
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        n += len(next(loader)["image"])
    return n / (time.perf_counter() - start)


def step_rate(module: IncrementalSegmenter, batch: dict, steps: int) -> float:
    optimizer = torch.optim.AdamW(module.student.parameters(), lr=1e-3)
    module.train()
    module.training_step(batch, 0)["loss"].backward()  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        optimizer.zero_grad()
        module.training_step(batch, i)["loss"].backward()
        optimizer.step()
    return steps * len(batch["image"]) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", default="0,1")
    args = parser.parse_args(argv)
    sizes = {"old_train": 400, "new_train": 400, "val": 16, "test": 16, "old_val": 16}
    scenario = build_scenario(load_scenario_config("fashion-new-class", {"sizes": sizes}))
    # The replay README's figures were measured with: before its defaults (2026-12-07).
    strategy = create_strategy("candidate-sets+replay", {"contrast": None, "self_training": None})
    sources = step_data(scenario, strategy).sources
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for workers in (int(w) for w in args.workers.split(",")):
        dm = IncrementalDataModule(
            [(s, i) for i, s in enumerate(sources)],
            scenario.val,
            shares=[0.5, 0.5],
            batch_size=args.batch_size,
            num_workers=workers,
            augment="full",
        )
        print(
            f"DataModule, {workers} worker(s), full augmentation: "
            f"{loader_rate(dm, args.batches):8.0f} samples/s"
        )
    teacher = create_model("tiny-unet", scenario.transition.num_old_classes).eval()
    module, _ = build_step(scenario, teacher, {"name": "tiny-unet"}, strategy)
    batch = next(iter(dm.train_dataloader()))
    rate = step_rate(module, batch, args.batches)
    print(f"training step (tiny-unet, candidate sets, teacher + student): {rate:8.0f} samples/s")


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", ".*self.log.*")
    main()
