"""Picture of a few Fashion scenes with their labels, for both scenarios.

    python -m experiments.plot_scenes [--output docs/scenes.png]

Rows per scenario: old images with old labels, new images with partial labels (grey =
unlabeled), and the complete ground truth the oracle and the evaluation use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.config import load_scenario_config  # noqa: E402
from incremental.data import build_scenario  # noqa: E402

SIZES = {"old_train": 4, "new_train": 4, "val": 2, "test": 2, "old_val": 2}


#: Class colours (tab10 without its grey, which marks unlabeled pixels); black = background.
PALETTE = np.concatenate(
    [np.zeros((1, 3)), plt.get_cmap("tab10")(np.array([0, 1, 2, 3, 4, 5, 6, 8, 9]))[:, :3]]
)


def _colour(mask: np.ndarray) -> np.ndarray:
    return PALETTE[np.clip(mask, 0, len(PALETTE) - 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="docs/scenes.png")
    args = parser.parse_args(argv)
    scenarios = [
        build_scenario(load_scenario_config(n, {"sizes": SIZES}))
        for n in ("fashion-new-class", "fashion-split")
    ]
    fig, axes = plt.subplots(6, 8, figsize=(13, 10.5))
    for s, scenario in enumerate(scenarios):
        student = scenario.transition.student_classes
        rows = [
            ("old image / old label", scenario.old_train, scenario.old_train, None),
            ("new image / partial label", scenario.new_train, scenario.new_train, "partial"),
            ("complete ground truth", scenario.new_train, scenario.new_train_full, None),
        ]
        for r, (title, images, labels, kind) in enumerate(rows):
            for i in range(4):
                image = images.load(i)[0]
                mask = labels.load(i)[1].astype(int)
                if kind == "partial":  # 0 = unlabeled (grey), 1 = the step class
                    step_class = student.index(labels.declaration.values[1])
                    shown = np.where(mask == 1, step_class, 0)
                    colour = _colour(shown)
                    colour[mask == 0] = 0.5
                else:
                    colour = _colour(mask)
                ax_img, ax_lab = axes[3 * s + r, 2 * i], axes[3 * s + r, 2 * i + 1]
                ax_img.imshow(image)
                ax_lab.imshow(colour)
                for ax in (ax_img, ax_lab):
                    ax.set_xticks([])
                    ax.set_yticks([])
            axes[3 * s + r, 0].set_ylabel(f"{scenario.name}\n{title}", fontsize=7)
    fig.suptitle(
        "Fashion scenes. Labels: black = background, grey = unlabeled, colours = classes",
        fontsize=10,
    )
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=60)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
