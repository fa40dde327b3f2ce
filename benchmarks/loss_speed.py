"""Loss speed: partial-label CE + set distillation vs F.cross_entropy + plain KL distillation.

Both sides run forward and backward on the same logits, labels and teacher logits. Ours
includes the candidate-set lookup from mask values, as in a training step.

    python benchmarks/loss_speed.py [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from incremental.constants import IGNORE_INDEX
from incremental.labels import CandidateSetTable, LabelDeclaration, TeacherMap, Transition
from incremental.losses import partial_cross_entropy, set_distillation


def make_case(batch: int, num_classes: int, size: int, seed: int = 0):
    """Logits for C = K + 1 classes, teacher logits for K, a new-image mask with the new class
    labeled, 5 % ignore, the rest unlabeled."""
    g = torch.Generator().manual_seed(seed)
    old = [f"c{i}" for i in range(num_classes - 1)]
    transition = Transition(tuple(old), new_classes=("new",))
    declaration = LabelDeclaration(
        "new", {0: "unlabeled", 1: "new", IGNORE_INDEX: "ignore"}, vocabulary="student"
    )
    table = CandidateSetTable([declaration], transition)
    logits = torch.randn(batch, num_classes, size, size, generator=g, requires_grad=True)
    teacher = torch.randn(batch, num_classes - 1, size, size, generator=g)
    u = torch.rand(batch, size, size, generator=g)
    mask = torch.where(u < 0.3, 1, 0)
    mask = torch.where(u > 0.95, IGNORE_INDEX, mask).to(torch.uint8)
    labels = torch.randint(0, num_classes, (batch, size, size), generator=g)
    labels = torch.where(u > 0.95, IGNORE_INDEX, labels)
    dataset = torch.zeros(batch, dtype=torch.long)
    return logits, teacher, mask, labels, dataset, table, TeacherMap(transition).matrix


def ours(logits, teacher, mask, labels, dataset, table, teacher_sets):
    candidates = table.lookup(mask, dataset)
    informative = table.lookup_informative(mask, dataset)
    with torch.no_grad():
        probs = logits.softmax(dim=1)  # one softmax shared by both terms, as the module does
    loss = partial_cross_entropy(
        logits, candidates, informative=informative, probs=probs
    ) + set_distillation(logits, teacher, teacher_sets, probs=probs)
    loss.backward()


def baseline(logits, teacher, mask, labels, dataset, table, teacher_sets):
    k = teacher.shape[1]
    kd = (
        F.kl_div(logits[:, :k].log_softmax(dim=1), teacher.softmax(dim=1), reduction="none")
        .sum(dim=1)
        .mean()
    )
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX) + kd
    loss.backward()


def time_it(fn, args, repeats: int) -> float:
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        args[0].grad = None
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'case (B, C, HxW)':<22}{'baseline ms':>13}{'ours ms':>10}{'ratio':>8}")
    for batch, classes, size in ((8, 21, 128), (2, 151, 256)):
        case = make_case(batch, classes, size)
        # Interleave to spread machine noise over both sides.
        base_t, ours_t = [], []
        for _ in range(3):
            base_t.append(time_it(baseline, case, args.repeats // 3 + 1))
            ours_t.append(time_it(ours, case, args.repeats // 3 + 1))
        b, o = statistics.median(base_t), statistics.median(ours_t)
        name = f"({batch}, {classes}, {size}x{size})"
        print(f"{name:<22}{b * 1e3:>13.1f}{o * 1e3:>10.1f}{o / b:>8.2f}")


if __name__ == "__main__":
    main()
