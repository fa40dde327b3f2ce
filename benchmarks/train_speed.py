"""Training-step speed: our LightningModule in Lightning's loop vs a plain PyTorch loop.

One step-1 training step of candidate sets (teacher forward, student forward and backward,
every loss term, AdamW step, learning-rate schedule) on one fixed pre-collated batch of
Fashion scenes, so data loading is left out. Lightning runs its real training loop
(``Trainer.fit`` with ``max_steps`` over a loader that yields that batch), timed from one
``on_train_batch_start`` to the next: everything the framework does per step counts. The plain
loop does the same computation with the same networks, buffers, loss functions and optimizer.
Blocks of the two alternate, each block's warm-up steps are discarded, medians are reported.

Rows: ``candidate-sets``; ``freeze``, candidate sets with the network frozen but the classifier
(``freeze=True``: teacher and student share their features, one body forward, two
heads), next to that strategy's plain loop with two full forwards (the computation before
sharing). The ``freeze`` preset itself has no teacher (no distillation, no refinement), hence
the override. Every row also times **plain cross-entropy fine-tuning** (student only, plain
loop): what a step costs without a teacher or any of our terms. On CUDA each block's peak GPU
memory is reported too. ``--rss-run`` adds the peak RSS of one complete ``train_step`` in a
fresh process.

    python -m benchmarks.train_speed [--batch-size 8] [--size 64] [--steps 10] [--rounds 6]
        [--warmup 2] [--threads N] [--clock wall|cpu] [--model tiny-unet]
        [--device cpu|cuda] [--precision 32-true|bf16-mixed] [--matmul-precision high]
        [--strategy all|candidate-sets|freeze] [--rss-run]

Paper scale on a GPU (the figures of README's "On a GPU")::

    python -m benchmarks.train_speed --device cuda --model deeplabv3-resnet101 --size 512 \
        --batch-size 24 --precision bf16-mixed --strategy candidate-sets --rounds 2

(from the repository root; ``python benchmarks/train_speed.py`` needs the project installed.)
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from experiments.config import load_scenario_config
from incremental.callbacks import FreezeOldNetwork
from incremental.data import build_scenario
from incremental.data.core import SampleDataset
from incremental.data.datamodule import pad_collate
from incremental.data.scenario import Scenario
from incremental.devices import describe_device, resolve_device
from incremental.models import create_model, list_models
from incremental.models.paired_forward import PairedForward, shared_head
from incremental.module import IncrementalSegmenter
from incremental.strategies import Strategy, create_strategy
from incremental.workflow import TrainConfig, build_step, step_data, train_step

#: Benchmark rows: candidate sets as trained, and with the old network frozen.
STRATEGIES: dict[str, dict[str, Any]] = {
    "candidate-sets": {},
    "freeze": {"freeze": True},
}
TARGET_RATIO = 1.10
#: Paper-scale targets on a GPU: a candidate-sets step against plain fine-tuning's.
TARGET_VS_FINETUNING = {"time": 1.35, "memory": 1.2}
#: ``cpu`` counts this process's CPU time only: steadier than wall time on a shared machine.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
Batch = dict[str, torch.Tensor]


# ---------------------------------------------------------------------- set-up
def make_scenario(size: int, images: int) -> Scenario:
    """The fashion-new-class scenario at ``size`` x ``size`` with ``images`` training images."""
    sizes = {"old_train": images, "new_train": images, "val": 4, "test": 4, "old_val": 4}
    overrides: dict[str, Any] = {"sizes": sizes, "image_size": size}
    if size < 64:  # the shipped item counts crowd small scenes (as tests/conftest.py)
        overrides["items_per_scene"] = [1, 2]
    return build_scenario(load_scenario_config("fashion-new-class", overrides))


def make_strategy(name: str) -> Strategy:
    return create_strategy("candidate-sets", STRATEGIES[name])


def make_batch(scenario: Scenario, strategy: Strategy, batch_size: int) -> Batch:
    """One pre-collated training batch: image (B, 3, H, W), mask (B, H, W), dataset (B,)."""
    source = step_data(scenario, strategy).sources[0]
    return pad_collate([SampleDataset(source, 0)[i] for i in range(batch_size)])


def make_module(
    scenario: Scenario, strategy: Strategy, model: str, seed: int = 0
) -> IncrementalSegmenter:
    """The step-1 module as :func:`incremental.workflow.train_step` builds it (untrained
    teacher: speed does not depend on the weights)."""
    torch.manual_seed(seed)
    teacher = create_model(model, scenario.transition.num_old_classes).eval()
    module, _ = build_step(scenario, teacher, {"name": model}, strategy, TrainConfig())
    return module


# ---------------------------------------------------------------------- Lightning
class _SameBatch(Dataset):
    """``length`` times the same batch (a loader with ``batch_size=None`` passes it on)."""

    def __init__(self, batch: Batch, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Batch:
        return self.batch


class StepTimer(L.Callback):
    """Times between consecutive ``on_train_batch_start`` calls: fetching, transfer, hooks, the
    step itself, logging and the scheduler, everything Lightning does per step."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(self.clock())

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


def lightning_block(
    module: IncrementalSegmenter,
    batch: Batch,
    steps: int,
    warmup: int,
    clock: Callable,
    precision: str = "32-true",
) -> list[float]:
    """Seconds per step of ``steps`` steps of ``Trainer.fit``, after ``warmup`` steps, on the
    device the batch is on."""
    timer = StepTimer(clock)
    total = warmup + steps + 1  # n starts give n - 1 step times
    device = batch["image"].device
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        max_steps=total,
        precision=precision,
        deterministic=TrainConfig().deterministic,  # as incremental.workflow.make_trainer
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    loader = DataLoader(_SameBatch(batch, total), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return timer.step_times()[warmup:]


# ---------------------------------------------------------------------- plain PyTorch
@dataclass
class PlainLoop:
    """The module's step-1 computation without Lightning: its networks, label lookup, step
    context and strategy (the same objects), AdamW and the polynomial schedule.

    ``teacher``: ``"separate"`` (two full forwards), ``"shared"`` (one body forward, two heads),
    or ``"none"`` (student only: cross-entropy on the label's sets).
    """

    module: IncrementalSegmenter
    teacher: str
    total_steps: int
    clock: Callable[[], float] = time.perf_counter
    precision: str = "32-true"
    teacher_seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        m = self.module
        m.train()
        for callback in m.configure_callbacks():  # freezing, as the Trainer applies it
            if isinstance(callback, FreezeOldNetwork):
                callback.freeze_before_training(m)
        params = [p for p in m.student.parameters() if p.requires_grad]
        decay = 0.0 if m.strategy.freeze else m.optimization.weight_decay  # as the callback
        self.optimizer = torch.optim.AdamW(params, lr=m.optimization.lr, weight_decay=decay)
        total = self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: max(1.0 - step / total, 0.0) ** 0.9
        )
        teacher = None if self.teacher == "none" else m.teacher
        shared = None
        if self.teacher == "shared":
            shared = shared_head(
                m.student, m.teacher, len(m.classes), m.labels.transition.num_old_classes
            )
        self.forward = PairedForward(m.student, teacher, shared=shared)
        # Student only: the cross-entropy on the label's sets, nothing that reads a teacher.
        self.strategy = m.strategy if teacher is not None else Strategy("cross-entropy")
        if teacher is not None:
            self._time(m.teacher.get_submodule(shared) if shared else m.teacher)

    def _time(self, network: torch.nn.Module) -> None:
        """Record each forward of ``network`` (the teacher, or its head when shared) in
        ``teacher_seconds``."""
        started: list[float] = []
        network.register_forward_pre_hook(lambda *_: started.append(self.clock()))
        network.register_forward_hook(
            lambda *_: self.teacher_seconds.append(self.clock() - started.pop())
        )

    def step(self, batch: Batch) -> None:
        m = self.module
        device = batch["image"].device.type
        # As Lightning's bf16-mixed: the forwards and the losses under autocast.
        with torch.autocast(device, torch.bfloat16, enabled=self.precision == "bf16-mixed"):
            context = m.step_context(batch, self.forward(batch["image"]))
            loss = sum(self.strategy.loss_terms(context).values())
        if not bool(torch.isfinite(loss)):  # the module checks too
            raise FloatingPointError("non-finite loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()


def plain_block(
    module: IncrementalSegmenter,
    teacher: str,
    batch: Batch,
    steps: int,
    warmup: int,
    clock: Callable[[], float],
    precision: str = "32-true",
) -> tuple[list[float], list[float]]:
    """Seconds per step and teacher seconds per step, after ``warmup`` steps."""
    loop = PlainLoop(module, teacher, warmup + steps, clock, precision)
    times = []
    for _ in range(warmup + steps):
        start = clock()
        loop.step(batch)
        times.append(clock() - start)
    return times[warmup:], loop.teacher_seconds[warmup:]


# ---------------------------------------------------------------------- measurement
def _synchronised(clock: Callable[[], float], device: torch.device) -> Callable[[], float]:
    """The clock, reading only once the device has finished its queued work (CUDA runs
    asynchronously: an unsynchronised clock times the launches, not the work)."""
    if device.type != "cuda":
        return clock

    def read() -> float:
        torch.cuda.synchronize(device)
        return clock()

    return read


def measure(module: IncrementalSegmenter, batch: Batch, args: argparse.Namespace) -> dict:
    """Alternating blocks; medians in ms, images/s, Lightning/plain, the teacher's share, and
    on CUDA each block's peak GPU memory (MiB)."""
    frozen = module.strategy.freeze
    device = batch["image"].device
    steps, warmup = args.steps, args.warmup
    clock = _synchronised(CLOCKS[args.clock], device)
    precision = args.precision

    def plain(teacher: str) -> Callable[[], tuple[list[float], list[float]]]:
        return lambda: plain_block(module, teacher, batch, steps, warmup, clock, precision)

    blocks = {
        "lightning": lambda: (lightning_block(module, batch, steps, warmup, clock, precision), []),
        "plain": plain("shared" if frozen else "separate"),
        "student_only": plain("none"),
    }
    if frozen:  # the computation before sharing, for the gain
        blocks["two_forwards"] = plain("separate")
    times: dict[str, list[float]] = {k: [] for k in blocks}
    teacher: dict[str, list[float]] = {k: [] for k in blocks}
    memory: dict[str, float] = {k: float("nan") for k in blocks}
    names = list(blocks)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            step_s, teacher_s = blocks[name]()
            times[name] += step_s
            teacher[name] += teacher_s
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device) / 2**20
                memory[name] = peak if memory[name] != memory[name] else max(memory[name], peak)
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    teacher_ms = {k: statistics.median(v) * 1e3 for k, v in teacher.items() if v}
    images = len(batch["image"])
    return {
        "lightning_ms": ms["lightning"],
        "plain_ms": ms["plain"],
        "ratio": ms["lightning"] / ms["plain"],
        "lightning_img_s": images / ms["lightning"] * 1e3,
        "plain_img_s": images / ms["plain"] * 1e3,
        "student_only_ms": ms["student_only"],
        "student_only_img_s": images / ms["student_only"] * 1e3,
        "vs_finetuning": ms["lightning"] / ms["student_only"],
        "teacher_ms": teacher_ms["plain"],
        "teacher_share": teacher_ms["plain"] / ms["plain"],
        "two_forwards_ms": ms.get("two_forwards"),
        "two_forwards_teacher_ms": teacher_ms.get("two_forwards"),
        "lightning_mib": memory["lightning"],
        "student_only_mib": memory["student_only"],
        "memory_vs_finetuning": memory["lightning"] / memory["student_only"],
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, ``ru_maxrss`` (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_status_mib(key: str) -> float:
    """A memory line of Linux's ``/proc/self/status`` in MiB (NaN elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_child(args: argparse.Namespace) -> dict[str, float]:
    """One complete step-1 ``train_step`` (one short epoch, validation and test included).

    Returns the peak RSS before training (imports and scenario: a high-water mark training must
    pass to show), the resident size when training starts, and the peak RSS after it. Peaks are
    ``VmHWM``, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over ``exec`` from the parent
    that spawned this process, so it would report the parent's peak.
    """
    scenario = make_scenario(args.size, 4 * args.batch_size)
    before, resident = _proc_status_mib("VmHWM"), _proc_status_mib("VmRSS")
    teacher = create_model(args.model, scenario.transition.num_old_classes).eval()
    config = TrainConfig(epochs=1, batch_size=args.batch_size, progress_bar=False, augment="none")
    with tempfile.TemporaryDirectory() as out:
        train_step(
            scenario, teacher, {"name": args.model}, make_strategy(args.strategy), config, 0, out
        )
    return {"before_mib": before, "resident_mib": resident, "peak_mib": _proc_status_mib("VmHWM")}


def rss_run(args: argparse.Namespace, strategy: str) -> dict[str, float]:
    """:func:`rss_child` in a fresh interpreter, so this process's allocations do not count."""
    # As a module from the repository root, so that ``experiments`` imports without install.
    command = [sys.executable, "-m", "benchmarks.train_speed", "--rss-child"]
    command += ["--strategy", strategy, "--size", str(args.size)]
    command += ["--batch-size", str(args.batch_size), "--model", args.model]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=root)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- report
def print_table(results: dict[str, dict]) -> None:
    print(
        f"{'strategy':<16}{'Lightning ms':>13}{'plain ms':>10}{'L/plain':>9}"
        f"{'L img/s':>9}{'plain img/s':>13}"
    )
    for name, r in results.items():
        print(
            f"{name:<16}{r['lightning_ms']:>13.1f}{r['plain_ms']:>10.1f}{r['ratio']:>9.2f}"
            f"{r['lightning_img_s']:>9.0f}{r['plain_img_s']:>13.0f}"
        )
    worst = max(r["ratio"] for r in results.values())
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"target Lightning/plain <= {TARGET_RATIO:.2f}: {verdict} (worst {worst:.2f})")
    print()
    print(
        f"{'plain loop':<16}{'student-only ms':>16}{'student+teacher ms':>20}"
        f"{'teacher ms':>12}{'teacher share':>15}"
    )
    for name, r in results.items():
        print(
            f"{name:<16}{r['student_only_ms']:>16.1f}{r['plain_ms']:>20.1f}"
            f"{r['teacher_ms']:>12.1f}{r['teacher_share']:>15.0%}"
        )
        if r["two_forwards_ms"] is not None:
            label = f"{name} 2 fwd"
            share = r["two_forwards_teacher_ms"] / r["two_forwards_ms"]
            print(
                f"{label:<16}{r['student_only_ms']:>16.1f}{r['two_forwards_ms']:>20.1f}"
                f"{r['two_forwards_teacher_ms']:>12.1f}{share:>15.0%}"
            )
            gain = r["two_forwards_ms"] / r["plain_ms"]
            print(f"  shared features vs two forwards: {gain:.2f}x faster step")
    print()
    print(
        f"{'vs plain fine-tuning':<22}{'ours ms':>9}{'fine-tune ms':>14}{'ratio':>7}"
        f"{'ours MiB':>10}{'fine-tune MiB':>15}{'ratio':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:<22}{r['lightning_ms']:>9.1f}{r['student_only_ms']:>14.1f}"
            f"{r['vs_finetuning']:>7.2f}{r['lightning_mib']:>10.0f}{r['student_only_mib']:>15.0f}"
            f"{r['memory_vs_finetuning']:>7.2f}"
        )
    time_target, memory_target = TARGET_VS_FINETUNING["time"], TARGET_VS_FINETUNING["memory"]
    print(
        f"(ours: Lightning, teacher + student, every term; fine-tune: plain loop, student only, "
        f"cross-entropy; GPU targets <= {time_target:.2f}x time, <= {memory_target:.2f}x memory; "
        "memory is measured on CUDA only)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="scene height and width")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="discarded steps per block")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of the blocks")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS), help="cpu: process time")
    parser.add_argument("--model", default="tiny-unet", choices=list_models())
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--matmul-precision",
        default=None,
        choices=["highest", "high", "medium"],
        help="torch.set_float32_matmul_precision ('high': TF32 on Ampere+ GPUs)",
    )
    parser.add_argument("--strategy", default="all", choices=["all", *STRATEGIES])
    parser.add_argument("--rss-run", action="store_true", help="peak RSS of one train_step")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's banners and its advice about the set-up chosen here (no workers, no
    validation, a frozen teacher in eval mode, no logger); restored afterwards."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in ("many workers", "no `val_dataloader`", "in eval mode", "self.log"):
                warnings.filterwarnings("ignore", f".*{message}.*")
            warnings.filterwarnings("ignore", ".*LeafSpec.*")  # Lightning vs newer torch
            yield
    finally:
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its tables; returns the numbers (per strategy, RSS)."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with quiet_lightning():
        if args.rss_child:
            print(json.dumps(rss_child(args)))
            return {}
        return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    device = resolve_device(args.device)
    if args.matmul_precision:
        torch.set_float32_matmul_precision(args.matmul_precision)
    scenario = make_scenario(args.size, args.batch_size)
    print(
        f"torch {torch.__version__}, {describe_device(device)}, {torch.get_num_threads()} "
        f"threads, {args.model}, batch {args.batch_size} of {args.size}x{args.size}, "
        f"{args.precision}, median of {args.rounds} rounds x {args.steps} steps per block "
        f"({args.warmup} warm-up steps discarded), {args.clock} clock"
    )
    results = {}
    for name in names:
        strategy = make_strategy(name)
        batch = {
            k: v.to(device) for k, v in make_batch(scenario, strategy, args.batch_size).items()
        }
        module = make_module(scenario, strategy, args.model).to(device)
        results[name] = measure(module, batch, args)
    print_table(results)
    report: dict[str, Any] = {"strategies": results, "peak_rss_mib": peak_rss_mib()}
    print(f"\npeak RSS of this process after the measurement: {report['peak_rss_mib']:.0f} MiB")
    if args.rss_run:
        report["rss_run"] = {name: rss_run(args, name) for name in names}
        for name, r in report["rss_run"].items():
            print(
                f"train_step ({name}) in a fresh process: peak RSS {r['peak_mib']:.0f} MiB "
                f"(before training: peak {r['before_mib']:.0f} MiB, resident "
                f"{r['resident_mib']:.0f} MiB)"
            )
    return report


if __name__ == "__main__":
    main()
