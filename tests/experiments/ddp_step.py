"""Step-1 training of a tiny scenario on ``DEVICES`` CPU processes (Lightning DDP, gloo).

Run by tests/experiments/test_ddp.py as ``python ddp_step.py DEVICES OUT``; Lightning's DDP
launcher re-runs this script once per extra process. Rank 0 writes ``OUT/scores.json`` and
``OUT/student.pt`` (the tested student's state dict); every rank writes ``OUT/rank<N>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from incremental.data import build_scenario  # noqa: E402
from incremental.models import create_model  # noqa: E402
from incremental.strategies import create_strategy  # noqa: E402
from incremental.workflow import TrainConfig, train_step  # noqa: E402
from tests.conftest import tiny_scenario_config  # noqa: E402

#: One global batch of 8: 8 images on 1 process, 4 on each of 2.
GLOBAL_BATCH = 8


def main(devices: int, out: Path) -> None:
    scenario = build_scenario(tiny_scenario_config("fashion-new-class"))
    torch.manual_seed(0)
    teacher = create_model("tiny-unet", scenario.transition.num_old_classes).eval()
    config = TrainConfig(
        epochs=2,
        epoch_size=32,
        batch_size=GLOBAL_BATCH // devices,
        progress_bar=False,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        deterministic=True,
    )
    # PLOP: pseudo-label thresholds fitted on one pass over the (distributed) training data.
    strategy = create_strategy("plop")
    result = train_step(scenario, teacher, {"name": "tiny-unet"}, strategy, config, 0, out)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    (out / f"rank{rank}.json").write_text(json.dumps(result.scores))
    if rank == 0:
        torch.save(result.model.state_dict(), out / "student.pt")


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
