"""Pascal VOC 2012 (with the SBD "aug" training masks) read from its directory on disk.

Expected layout under ``root`` (the ``VOC2012`` folder, as MiB and most segmentation code use)::

    JPEGImages/<stem>.jpg
    SegmentationClassAug/<stem>.png          # one uint8 label per pixel, 255 = ignore
    ImageSets/Segmentation/train_aug.txt     # the "train" split (10,582 images)
    ImageSets/Segmentation/val.txt           # the "val" split (1,449 images)

A list file holds one stem per line (``2007_000032``) or MiB's pairs
(``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``). MiB keeps its lists in
``root/splits/``; that folder is searched too. The image/mask-pair machinery here is shared with
:mod:`incremental.data.paper.ade`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from incremental.constants import IGNORE_INDEX
from incremental.data.core import read_image, read_mask
from incremental.labels import IGNORE, LabelDeclaration

#: VOC's 21 classes in label order (mask value = index).
VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: Split name -> list file name (MiB trains on the SBD-augmented list).
VOC_SPLIT_LISTS = {"train": "train_aug.txt", "val": "val.txt"}
_LIST_DIRS = ("ImageSets/Segmentation", "splits")
_MISSING_SHOWN = 5  # how many missing files an error names before it counts the rest


def full_declaration(name: str, classes: Sequence[str]) -> LabelDeclaration:
    """Every class labeled, mask value = class index, 255 = ignore (the raw annotations)."""
    values: dict[int, str] = {value: cls for value, cls in enumerate(classes)}
    values[IGNORE_INDEX] = IGNORE
    return LabelDeclaration(name, values, vocabulary="student", exhaustive=True)


def require_dir(path: Path, what: str) -> None:
    """Raise FileNotFoundError naming ``path`` and what should be there."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: folder not found; expected {what}")


def require_files(paths: Sequence[Path], what: str) -> None:
    """Raise FileNotFoundError naming the first missing ``paths``."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise FileNotFoundError(f"{len(missing)} {what} not found: {shown}{more}")


class PairedFileSource:
    """A :class:`~incremental.data.core.SegmentationSource` over image/mask file pairs.

    Attributes:
        stems: one name per sample (file name without folder and extension).
        image_paths, mask_paths: the files, in the same order.
        declaration: what the raw mask values mean.
    """

    def __init__(
        self,
        stems: Sequence[str],
        image_paths: Sequence[Path],
        mask_paths: Sequence[Path],
        declaration: LabelDeclaration,
    ) -> None:
        if not len(stems) == len(image_paths) == len(mask_paths):
            raise ValueError("stems, image_paths and mask_paths must have the same length")
        require_files(image_paths, "image(s)")
        require_files(mask_paths, "mask(s)")
        self.stems = list(stems)
        self.image_paths = list(image_paths)
        self.mask_paths = list(mask_paths)
        self.declaration = declaration

    def __len__(self) -> int:
        return len(self.stems)

    def load_mask(self, index: int) -> np.ndarray:
        """(H, W) uint8 raw label values, without decoding the image (for label statistics)."""
        return read_mask(self.mask_paths[index])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and raw mask (H, W) uint8."""
        image = read_image(self.image_paths[index])
        mask = self.load_mask(index)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{self.mask_paths[index]}: mask size {mask.shape} differs from image "
                f"{self.image_paths[index]} size {image.shape[:2]}"
            )
        return image, mask


def find_list_file(root: Path, split: str) -> Path:
    """The list file of ``split``: ``ImageSets/Segmentation/`` first, then MiB's ``splits/``."""
    if split not in VOC_SPLIT_LISTS:
        raise ValueError(f"VOC split {split!r} is not one of {list(VOC_SPLIT_LISTS)}")
    name = VOC_SPLIT_LISTS[split]
    candidates = [root / d / name for d in _LIST_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"VOC {split!r} list not found: looked for {' and '.join(str(p) for p in candidates)}; "
        f"expected one image stem per line (MiB's '/JPEGImages/x.jpg /SegmentationClassAug/x.png' "
        "lines work too)"
    )


def parse_list(path: Path, root: Path, mask_dir: str) -> tuple[list[str], list[Path], list[Path]]:
    """Stems, image paths and mask paths from a list file (stems or MiB's path pairs)."""
    stems: list[str] = []
    images: list[Path] = []
    masks: list[Path] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1:
            stem = Path(fields[0]).stem
            image, mask = root / "JPEGImages" / f"{stem}.jpg", root / mask_dir / f"{stem}.png"
        elif len(fields) == 2:
            # MiB's lines start with "/": relative to root, not the filesystem's root.
            image, mask = (root / f.lstrip("/") for f in fields)
            stem = image.stem
        else:
            raise ValueError(
                f"{path}:{number}: expected a stem or 'image_path mask_path', got {line!r}"
            )
        stems.append(stem)
        images.append(image)
        masks.append(mask)
    if not stems:
        raise ValueError(f"{path}: the list is empty")
    return stems, images, masks


class VOCSegmentation(PairedFileSource):
    """Pascal VOC 2012 images with their raw masks (values 0..20, 255 = ignore).

    Args:
        root: the ``VOC2012`` folder (see the module docstring for the layout).
        split: ``"train"`` (``train_aug.txt``) or ``"val"`` (``val.txt``).
        list_file: a list to read instead of the split's default one.
        mask_dir: the masks' folder under ``root``, for stem lists.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        list_file: str | Path | None = None,
        mask_dir: str = "SegmentationClassAug",
    ) -> None:
        root = Path(root)
        require_dir(root, "the Pascal VOC 2012 folder (JPEGImages/, SegmentationClassAug/, ...)")
        require_dir(root / "JPEGImages", "the VOC images as <stem>.jpg")
        path = Path(list_file) if list_file is not None else find_list_file(root, split)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: list file not found")
        stems, images, masks = parse_list(path, root, mask_dir)
        if any(m.parent == root / mask_dir for m in masks):
            require_dir(
                root / mask_dir,
                "the label PNGs as <stem>.png (values 0-20, 255 = ignore; SegmentationClassAug "
                "is the SBD-augmented set MiB trains on)",
            )
        super().__init__(stems, images, masks, full_declaration(f"voc-{split}", VOC_CLASSES))
        self.root, self.split, self.list_file = root, split, path
