"""ADE20K (the SceneParsing ``ADEChallengeData2016`` release) read from its directory on disk.

Expected layout under ``root`` (the ``ADEChallengeData2016`` folder)::

    images/training/<stem>.jpg         annotations/training/<stem>.png
    images/validation/<stem>.jpg       annotations/validation/<stem>.png

Annotations hold values 0..150: 1..150 are the SceneParsing classes (``objectInfo150``) and 0 is
"other" (everything else). Following MiB, 0 is class 0, the background, in every step.
"""

from __future__ import annotations

from pathlib import Path

from incremental.data.paper.voc import PairedFileSource, full_declaration, require_dir

# objectInfo150's first name of each class, in label order 1..150, snake_case.
_ADE_NAMES = """
    wall building sky floor tree ceiling road bed windowpane grass
    cabinet sidewalk person earth door table mountain plant curtain
    chair car water painting sofa shelf house sea mirror rug field
    armchair seat fence desk rock wardrobe lamp bathtub railing
    cushion base box column signboard chest_of_drawers counter sand sink
    skyscraper fireplace refrigerator grandstand path stairs runway case
    pool_table pillow screen_door stairway river bridge bookcase blind
    coffee_table toilet flower book hill bench countertop stove palm
    kitchen_island computer swivel_chair boat bar arcade_machine hovel bus
    towel light truck tower chandelier awning streetlight booth
    television_receiver airplane dirt_track apparel pole land bannister
    escalator ottoman bottle buffet poster stage van ship fountain
    conveyer_belt canopy washer plaything swimming_pool stool barrel basket
    waterfall tent bag minibike cradle oven ball food step tank
    trade_name microwave pot animal bicycle lake dishwasher screen
    blanket sculpture hood sconce vase traffic_light tray ashcan fan
    pier crt_screen plate monitor bulletin_board shower radiator glass
    clock flag
"""

#: ADE20K's 151 classes in label order (mask value = index); 0 is ADE's "other".
ADE_CLASSES: tuple[str, ...] = ("background", *_ADE_NAMES.split())

#: Split name -> the release's folder name.
ADE_SPLIT_DIRS = {"train": "training", "val": "validation"}


class ADE20KSegmentation(PairedFileSource):
    """ADE20K images with their raw annotations (values 0..150).

    Samples are the split's images in sorted file-name order, as MiB lists them.

    Args:
        root: the ``ADEChallengeData2016`` folder (see the module docstring for the layout).
        split: ``"train"`` (``training``) or ``"val"`` (``validation``).
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in ADE_SPLIT_DIRS:
            raise ValueError(f"ADE20K split {split!r} is not one of {list(ADE_SPLIT_DIRS)}")
        root = Path(root)
        folder = ADE_SPLIT_DIRS[split]
        require_dir(root, "the ADE20K folder ADEChallengeData2016 (images/, annotations/)")
        image_dir, mask_dir = root / "images" / folder, root / "annotations" / folder
        require_dir(image_dir, "the ADE20K images as <stem>.jpg")
        require_dir(mask_dir, "the ADE20K annotations as <stem>.png (values 0-150)")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".jpg")
        if not images:
            raise FileNotFoundError(f"{image_dir}: no .jpg images; expected <stem>.jpg files")
        stems = [p.stem for p in images]
        masks = [mask_dir / f"{stem}.png" for stem in stems]
        super().__init__(stems, images, masks, full_declaration(f"ade-{split}", ADE_CLASSES))
        self.root, self.split = root, split
