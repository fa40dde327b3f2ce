"""Is a split's gap a matter of where the classifier puts the child/remainder boundary?
(issue "Case 2 that works": the remainder's IoU and the within-parent balanced accuracy under
the oracle's.)

Adds a bias ``b`` to the child's logit (the remainder's and every other class's unchanged) on
the test scenes and prints, per model and ``b``, the child's and the remainder's IoU and the
within-parent balanced accuracy (``incremental.metrics.split_scores``, as results.csv scores
them). If a shift of the boundary closed the gap to the oracle, a prior correction would be
the fix; if the balanced accuracy barely moves with ``b``, the sub-types are not separated by
the features, whatever the threshold. The test labels choose nothing here: every ``b`` is
printed, the best marked for reading only.

    python -m benchmarks.split_operating_point fashion-split MODEL.pt [MODEL.pt ...] \\
        [--profile full] [--biases -2,-1,-0.5,0,0.5,1,2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from experiments.split_study import read_model_files, split_scenario
from incremental.constants import IGNORE_INDEX
from incremental.data.core import SampleDataset, SegmentationSource
from incremental.data.transforms import eval_transform
from incremental.labels import Split
from incremental.metrics import split_scores


def test_logits(model: torch.nn.Module, source: SegmentationSource) -> tuple[torch.Tensor, ...]:
    """(N, C, H, W) logits and (N, H, W) class-index masks of every test scene (equal sizes)."""
    samples = SampleDataset(source, 0, eval_transform())
    images = torch.stack([samples[i]["image"] for i in range(len(samples))])
    masks = torch.stack([samples[i]["mask"] for i in range(len(samples))]).long()
    with torch.no_grad():
        logits = torch.cat([model(images[i : i + 64]) for i in range(0, len(images), 64)])
    return logits, masks


def biased_scores(
    logits: torch.Tensor,
    masks: torch.Tensor,
    child: int,
    bias: float,
    classes: list[str],
    split: Split,
) -> dict[str, float]:
    """``split_scores`` of the predictions with ``bias`` added to the child's logit.

    Args:
        logits: (N, C, H, W); masks: (N, H, W) class indices, ``IGNORE_INDEX`` ignored.
    """
    shifted = logits.clone()
    shifted[:, child] += bias
    # The confusion matrix the training module scores with (torchmetrics, rows = target).
    confusion = multiclass_confusion_matrix(
        shifted.argmax(dim=1), masks, len(classes), ignore_index=IGNORE_INDEX
    )
    return split_scores(confusion, classes, [split])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="a split scenario's name or YAML path")
    parser.add_argument("models", nargs="+", type=Path, help="model files of that scenario")
    parser.add_argument("--profile", default="full", help="whose test scenes (default: full)")
    parser.add_argument("--biases", default="-2,-1,-0.5,-0.25,0,0.25,0.5,1,2")
    args = parser.parse_args()
    try:
        biases = [float(b) for b in args.biases.split(",")]
    except ValueError:
        parser.error(f"--biases {args.biases!r}: comma-separated numbers, e.g. -1,0,1")
    model_files = read_model_files(args.models, parser.error)
    torch.set_num_threads(1)
    with split_scenario(args.scenario, parser.error, args.profile) as (_, _, scenario, split):
        classes = list(scenario.transition.student_classes)
        child = classes.index(split.children[0])
        for path, model_file in zip(args.models, model_files, strict=True):
            if list(model_file.classes) != classes:
                parser.error(f"{path}: classes {list(model_file.classes)}, not {scenario.name}'s")
            logits, masks = test_logits(model_file.build().eval(), scenario.test)
            rows = {b: biased_scores(logits, masks, child, b, classes, split) for b in biases}
            best = max(biases, key=lambda b: rows[b]["split_bacc"])
            for b, s in rows.items():
                print(
                    f"{scenario.name} {path.name} b={b:+.2f}: child {s['child_iou']:.1%}, "
                    f"remainder {s['remainder_iou']:.1%}, balanced accuracy "
                    f"{s['split_bacc']:.1%}" + ("  <- highest" if b == best else "")
                )


if __name__ == "__main__":
    main()
