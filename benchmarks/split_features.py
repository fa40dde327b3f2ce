"""Does a model's feature map tell a split's child from its remainder? (issue "Case 2 that
works", item 3: assigning old images' parent pixels by distance to prototypes.)

Prototypes are the mean L2-normalised features of the child's and the remainder's pixels on the
new images, with their true sub-types (the fully labeled copy the oracle trains on: the
optimistic case, where a method would only have the labeled child and refined remainder
pixels). Each parent pixel of the old images then takes its nearer prototype (cosine), and the
script prints the recall of each sub-type and their mean, the within-parent balanced accuracy
(50 % = no split). The child and the remainder are the scenario's split's (any scenario with
one split of one child: ``fashion-split``, ``fashion-garment``, their sibling-rate variants, a
YAML path). Default model: the scenario's seed-0 old model (the teacher), cached or shipped,
found as the runner finds it.

    python -m benchmarks.split_features fashion-split [MODEL.pt ...] [--layer -1] [--images 300]

``--layer``: which feature map of :func:`incremental.models.segment_with_features` (-1: the
decoder's output, the last map before the classifier; -2, -3...: the encoder's, deepest first),
upsampled bilinearly to the image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.split_study import read_model_files, split_scenario
from experiments.steps import lookup_old_model
from incremental.data.core import SampleDataset, SegmentationSource
from incremental.data.transforms import eval_transform
from incremental.models import segment_with_features


def pixel_features(
    model: torch.nn.Module, source: SegmentationSource, classes: tuple[int, int], layer: int,
    images: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(N, D) normalised features and (N,) 0/1 (child/remainder) of the pixels of ``classes``
    on the first ``images`` images of ``source``."""
    samples = SampleDataset(source, 0, eval_transform())
    features, targets = [], []
    for i in range(min(images, len(samples))):
        sample = samples[i]
        x, y = sample["image"][None], sample["mask"]  # (1, 3, H, W), (H, W)
        with torch.no_grad():
            _, maps = segment_with_features(model, x)
        fmap = F.interpolate(maps[layer], size=x.shape[-2:], mode="bilinear", align_corners=False)
        fmap = F.normalize(fmap[0], dim=0)  # (D, H, W)
        keep = (y == classes[0]) | (y == classes[1])
        features.append(fmap[:, keep].T)
        targets.append((y[keep] == classes[1]).long())
    return torch.cat(features), torch.cat(targets)


def prototype_recalls(
    model: torch.nn.Module, new: SegmentationSource, old: SegmentationSource,
    classes: tuple[int, int], layer: int, images: int,
) -> tuple[float, float]:  # fmt: skip
    """Child and remainder recall of nearest-prototype assignment on the old images."""
    fn, yn = pixel_features(model, new, classes, layer, images)
    fo, yo = pixel_features(model, old, classes, layer, images)
    for where, y in (("new", yn), ("old", yo)):
        for k in (0, 1):
            if not bool((y == k).any()):
                raise ValueError(f"class {classes[k]} has no pixel in the first {images} {where} "
                                 "images: use more images")  # fmt: skip
    prototypes = F.normalize(torch.stack([fn[yn == 0].mean(0), fn[yn == 1].mean(0)]), dim=1)
    assigned = (fo @ prototypes.T).argmax(dim=1)
    return [float((assigned[yo == k] == k).float().mean()) for k in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="a split scenario's name or YAML path")
    parser.add_argument("models", nargs="*", type=Path, help="model files (default: teacher)")
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    model_files = read_model_files(args.models, parser.error)
    torch.set_num_threads(1)
    with split_scenario(args.scenario, parser.error) as (config, scenario_cfg, scenario, split):
        child_name, remainder_name = split.children[0], split.remainder
        names = scenario.transition.student_classes
        classes = (names.index(child_name), names.index(remainder_name))
        paths = args.models
        if not paths:
            teacher = lookup_old_model(config, scenario_cfg, scenario, 0)[3]
            if teacher is None:
                parser.error(f"{scenario.name}: no cached or shipped seed-0 old model; name a "
                             "model file, or train it with python -m experiments.run")  # fmt: skip
            paths = [teacher]
            model_files = read_model_files(paths, parser.error)
        for path, model_file in zip(paths, model_files, strict=True):
            model = model_file.build().eval()
            child, remainder = prototype_recalls(
                model, scenario.new_train_full, scenario.old_train_full, classes, args.layer,
                args.images,
            )  # fmt: skip
            print(
                f"{scenario.name} layer {args.layer} {path.name}: recall {child_name} "
                f"{child:.1%}, {remainder_name} {remainder:.1%}, within-parent balanced "
                f"accuracy {(child + remainder) / 2:.1%}"
            )


if __name__ == "__main__":
    main()
