"""Train the old models a profile uses and ship them in ``experiments/old_models/``.

``python -m experiments.ship_old_models [--profile quick] [--scenarios a,b] [--seeds 0] [--jobs N]
[--rescore]``
trains, from scratch, the old model of every (scenario, seed) of the default experiment under
the profile, exactly as ``python -m experiments.run --retrain-old`` would, and writes each as
``experiments/old_models/old-<scenario>-seed<N>-<hash>.pt``: a model file that records its
step-0 settings and the hash of everything that decides it. The runner uses a shipped file
whenever its hash is the one it computes, so the default main job skips step 0.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from experiments.cache import SHIPPED_DIR
from experiments.run import main as run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--scenarios", help="comma-separated (default: the experiment's)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", default="auto")
    parser.add_argument("--work", default="outputs/ship-old-models", help="scratch folder")
    parser.add_argument(
        "--rescore", action="store_true", help="only score the shipped models again (no training)"
    )
    args = parser.parse_args(argv)
    if args.rescore:
        for path in sorted(SHIPPED_DIR.glob("old-*.pt")):
            scores = rescore(path)
            print(f"{path.name}: test scenes mIoU {scores['miou_all']:.3f}")
        return 0
    work = Path(args.work)
    cache = work / "cache"
    command = [
        "--profile", args.profile, "--seeds", args.seeds, "--jobs", args.jobs,
        "--strategies", "finetune", "--output", str(work / "run"), "--overwrite",
        "--retrain-old", "--wandb", "disabled", "--set", f"cache_dir={cache}",
        # Only the old models matter: one tiny step-1 run keeps the runner's path.
        "--set", "train.limit_train_batches=1", "--set", "train.epochs=1",
    ]  # fmt: skip
    if args.scenarios:
        command += ["--scenarios", args.scenarios]
    status = run_main(command)
    if status:
        return status
    SHIPPED_DIR.mkdir(exist_ok=True)
    for path in sorted(cache.glob("old-*.pt")):
        shutil.copy2(path, SHIPPED_DIR / path.name)
        print(f"shipped {SHIPPED_DIR / path.name}")
    return 0


def score_on_test_scenes(path: Path) -> tuple[dict[str, float], Any, Any]:
    """A shipped old model's scores on its scenario's test scenes in old labels (added classes
    ignored, split children counted as their parent), computed now; with the model file and
    the module that scored it."""
    from experiments.config import load_scenario_config
    from incremental.data import build_scenario
    from incremental.labels import StepLabels
    from incremental.models import load_model_file
    from incremental.module import IncrementalSegmenter
    from incremental.trainer import TrainConfig, evaluate

    model_file = load_model_file(path)
    payload = model_file.metadata["cache"]
    config = dict(payload["scenario"])  # the old data's config: complete it to build it
    config["sizes"] = {"new_train": 1, "val": 1, **config["sizes"]}
    scenario = build_scenario(load_scenario_config({"name": "rescore", **config}))
    labels = StepLabels.identity(model_file.classes, [scenario.old_train.declaration])
    module = IncrementalSegmenter(model_file.build(), labels)
    scores = evaluate(module, scenario.old_test, TrainConfig(**payload["train"]))
    return scores, model_file, module


def rescore(path: Path) -> dict[str, float]:
    """Score a shipped old model again on its scenario's test scenes in old labels (the
    ``test_scenes/`` scores of its metadata), without training: for a change of that
    evaluation only. The weights and their checksum are untouched."""
    from incremental.models import save_model_file

    scores, model_file, module = score_on_test_scenes(path)
    metadata = dict(model_file.metadata)
    metadata["scores"] = {
        **{k: v for k, v in metadata["scores"].items() if not k.startswith("test_scenes/")},
        **{f"test_scenes/{k}": v for k, v in scores.items()},
    }
    save_model_file(path, module.student, model_file.spec, model_file.classes, metadata=metadata)
    return scores


if __name__ == "__main__":
    sys.exit(main())
