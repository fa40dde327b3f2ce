"""Train the old models a profile uses and ship them in ``experiments/old_models/``.

``python -m experiments.ship_old_models [--profile quick] [--scenarios a,b] [--seeds 0] [--jobs N]``
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

from experiments.cache import SHIPPED_DIR
from experiments.run import main as run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--scenarios", help="comma-separated (default: the experiment's)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", default="auto")
    parser.add_argument("--work", default="outputs/ship-old-models", help="scratch folder")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
