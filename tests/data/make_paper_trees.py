"""Write tiny fake Pascal VOC 2012 and ADE20K trees with the real directory layout.

Each image is 32 x 24 pixels and shows the classes listed for its stem below as rectangles
(VOC objects with a 1-pixel 255 outline, as the real VOC masks have; ADE has no 255). Tests
filter and remap these and compare with expectations worked out by hand from the tables.

Usage: ``python tests/data/make_paper_trees.py OUT_DIR`` writes ``OUT_DIR/VOC2012`` and
``OUT_DIR/ADEChallengeData2016``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 32, 24
_SLOT = 10  # each class gets a 10-pixel-wide column: at most 3 classes per image

#: stem -> VOC classes shown (1 = aeroplane ... 15 = person, 16 = pottedplant ... 20 = tvmonitor).
VOC_TRAIN: dict[str, tuple[int, ...]] = {
    "a_background": (),
    "b_person": (15,),
    "c_cat_dog": (8, 12),
    "d_plant": (16,),
    "e_person_plant": (15, 16),
    "f_sheep": (17,),
    "g_cat_tv": (8, 20),
    "h_sofa_train": (18, 19),
    "i_plant_sheep": (16, 17),
    "j_aeroplane": (1,),
    "k_tv": (20,),
    "l_bus_sheep": (6, 17),
}
VOC_VAL: dict[str, tuple[int, ...]] = {
    "v_person": (15,),
    "v_plant": (16,),
    "v_cat_tv": (8, 20),
    "v_background": (),
}
#: stem -> ADE classes shown (1 = wall, 3 = sky, 13 = person, 101 = poster, 150 = flag).
ADE_TRAIN: dict[str, tuple[int, ...]] = {
    "ADE_train_00000001": (1, 13),
    "ADE_train_00000002": (101,),
    "ADE_train_00000003": (13, 120),
    "ADE_train_00000004": (55, 60),
    "ADE_train_00000005": (145, 150),
    "ADE_train_00000006": (),
    "ADE_train_00000007": (105, 3),
    "ADE_train_00000008": (111,),
}
ADE_VAL: dict[str, tuple[int, ...]] = {
    "ADE_val_00000001": (1, 150),
    "ADE_val_00000002": (120,),
    "ADE_val_00000003": (),
}


def draw(classes: tuple[int, ...], outline: bool) -> tuple[np.ndarray, np.ndarray]:
    """Image (HEIGHT, WIDTH, 3) uint8 and mask (HEIGHT, WIDTH) uint8 showing ``classes``."""
    if len(classes) > WIDTH // _SLOT:
        raise ValueError(f"at most {WIDTH // _SLOT} classes per image, got {classes}")
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 0] = np.linspace(40, 120, WIDTH, dtype=np.uint8)[None, :]
    image[..., 2] = np.linspace(60, 100, HEIGHT, dtype=np.uint8)[:, None]
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for slot, c in enumerate(classes):
        x0, y0, x1, y1 = 1 + slot * _SLOT, 3, 1 + slot * _SLOT + 8, HEIGHT - 3
        if outline:
            mask[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = 255
        mask[y0:y1, x0:x1] = c
        image[y0:y1, x0:x1] = ((c * 37) % 256, (c * 91) % 256, (c * 53) % 256)
    return image, mask


def _palette_png(mask: np.ndarray) -> Image.Image:
    """A palette PNG like VOC's own: the pixel values are the class indices."""
    png = Image.fromarray(mask).convert("P")
    png.putpalette([v for i in range(256) for v in (i, (i * 7) % 256, (i * 13) % 256)])
    return png


def make_voc_tree(root: Path) -> Path:
    """Write ``root/VOC2012``; the train list uses MiB's path pairs, val plain stems."""
    voc = Path(root) / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    for stem, classes in {**VOC_TRAIN, **VOC_VAL}.items():
        image, mask = draw(classes, outline=True)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{stem}.jpg", quality=95)
        _palette_png(mask).save(voc / "SegmentationClassAug" / f"{stem}.png")
    lists = voc / "ImageSets/Segmentation"
    pairs = [f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png" for s in VOC_TRAIN]
    (lists / "train_aug.txt").write_text("\n".join(pairs) + "\n")
    (lists / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    return voc


def make_ade_tree(root: Path) -> Path:
    """Write ``root/ADEChallengeData2016`` with grayscale annotations (0 = other)."""
    ade = Path(root) / "ADEChallengeData2016"
    for folder, table in (("training", ADE_TRAIN), ("validation", ADE_VAL)):
        (ade / "images" / folder).mkdir(parents=True, exist_ok=True)
        (ade / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for stem, classes in table.items():
            image, mask = draw(classes, outline=False)
            Image.fromarray(image).save(ade / "images" / folder / f"{stem}.jpg", quality=95)
            Image.fromarray(mask).save(ade / "annotations" / folder / f"{stem}.png")
    return ade


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python tests/data/make_paper_trees.py OUT_DIR")
    out = Path(args[0])
    print(make_voc_tree(out))
    print(make_ade_tree(out))


if __name__ == "__main__":
    main()
