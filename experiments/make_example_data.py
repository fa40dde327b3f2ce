"""Write a Fashion scenario as "your own data": dataset folders, their YAMLs and an old model.

``python -m experiments.make_example_data OUT_DIR [--scenario fashion-new-class]
[--sizes old_train=600,new_train=300,...] [--old-model trained|untrained|none]``

Writes ``OUT_DIR/<role>/{images,masks,dataset.yaml}`` for the roles old_train (old classes),
new_train (labeled only for the new class), val and test (complete labels), old_val, and
``OUT_DIR/old_model.pt``: a model file trained on old_train (``trained``, about a minute on 2
cores), a random one (``untrained``, for smoke tests) or none. This is exactly the layout a user
brings (see README, "Your own data"), so ``experiments/configs/own-data.yaml`` runs on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from experiments.config import load_scenario_config
from incremental.data import build_scenario
from incremental.data.core import SegmentationSource
from incremental.data.scenario import as_sources

ROLES = ("old_train", "new_train", "val", "test", "old_val")
DEFAULT_SIZES = {"old_train": 600, "new_train": 300, "val": 100, "test": 200, "old_val": 100}


def write_folder(source: SegmentationSource, folder: Path) -> Path:
    """Write ``source`` as ``folder/images/*.png``, ``folder/masks/*.png`` and
    ``folder/dataset.yaml`` (its label declaration); returns the YAML's path."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for index in range(len(source)):
        image, mask = source.load(index)
        Image.fromarray(np.asarray(image)).save(folder / "images" / f"{index:05d}.png")
        Image.fromarray(np.asarray(mask), mode="L").save(folder / "masks" / f"{index:05d}.png")
    declaration = source.declaration
    path = folder / "dataset.yaml"
    path.write_text(yaml.safe_dump({"name": folder.name, "labels": declaration.to_config()}))
    return path


def make_example_data(
    out: str | Path,
    scenario: str = "fashion-new-class",
    sizes: dict[str, int] | None = None,
    old_model: str = "trained",
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write the folders and the old model (see the module docstring); returns ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose another folder or remove it")
    config = load_scenario_config(
        scenario, {"sizes": {**DEFAULT_SIZES, **(sizes or {})}, "image_size": image_size}
    )
    built = build_scenario(config)
    for role in ROLES:
        (source,) = as_sources(getattr(built, role))
        write_folder(source, out / role)
    if old_model != "none":
        _write_old_model(built, out / "old_model.pt", old_model == "trained", seed)
    return out


def _write_old_model(scenario, path: Path, trained: bool, seed: int) -> None:
    import tempfile

    import torch

    from incremental.models import create_model, save_model_file
    from incremental.workflow import TrainConfig, train_old_model

    spec = {"name": "tiny-unet"}
    classes = scenario.transition.old_classes
    if trained:
        config = TrainConfig(epochs=8, lr=0.01, batch_size=16, augment="none")
        with tempfile.TemporaryDirectory() as run_dir:
            result = train_old_model(scenario, spec, config, seed, run_dir)
        model, metadata = result.model, {"scores": result.scores}
    else:
        torch.manual_seed(seed)
        model, metadata = create_model(num_classes=len(classes), **spec), {"untrained": True}
    save_model_file(path, model, spec, classes, metadata=metadata)


def _sizes(text: str) -> dict[str, int]:
    sizes = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in ROLES or not value.isdigit():
            raise argparse.ArgumentTypeError(
                f"--sizes: expected ROLE=N with ROLE in {list(ROLES)}, got {item!r}"
            )
        sizes[key] = int(value)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.make_example_data", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", help="output folder (must be empty or absent)")
    parser.add_argument("--scenario", default="fashion-new-class")
    parser.add_argument("--sizes", type=_sizes, default=None, help="e.g. old_train=100,val=20")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--old-model", choices=["trained", "untrained", "none"], default="trained")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        out = make_example_data(
            args.out, args.scenario, args.sizes, args.old_model, args.image_size, args.seed
        )
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = ", old_model.pt" if args.old_model != "none" else ""
    print(f"wrote {out}: {', '.join(ROLES)} folders{model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
