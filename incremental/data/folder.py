"""Your own data: a folder of images and label PNGs, described by a small YAML (DESIGN §4).

Layout (paths in the YAML are relative to the YAML's folder)::

    new_bags.yaml
    images/  0001.jpg  0002.png ...   RGB or grayscale PNG/JPEG
    masks/   0001.png  0002.png ...   'L' (grayscale) or 'P' (indexed) PNG, same stem as the
                                      image; the pixel value (palette index) is the label value

The YAML::

    name: new_bags          # default: the YAML file's stem
    images: images          # default
    masks: masks            # default
    labels:                 # LabelDeclaration.from_config(name, labels)
      vocabulary: student
      exhaustive: true
      values: {0: unlabeled, 1: bag, 255: ignore}

:class:`FolderDataset` is a :class:`~incremental.data.base.SegmentationSource`. It refuses bad
data when built, with every problem that :func:`incremental.data.check.check_dataset` finds.
The readers here (:func:`decode`, :func:`read_image`, :func:`read_mask`) are shared with the
check so that training and ``python -m incremental check`` agree on what is readable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from PIL import Image

from incremental.labels import LabelDeclaration

if TYPE_CHECKING:
    from incremental.labels import Transition

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_MODES",
    "MASK_SUFFIXES",
    "DatasetError",
    "FilePairs",
    "FolderDataset",
    "FolderLayout",
    "Problem",
    "decode",
    "pair_files",
    "read_image",
    "read_layout",
    "read_mask",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: JPEG compression invents values at label borders, so masks must be lossless PNG.
MASK_SUFFIXES = (".png",)
#: Modes whose pixel value is the label value: grayscale and indexed (palette index).
MASK_MODES = ("L", "P")
YAML_KEYS = ("name", "images", "masks", "labels")
#: Files that operating systems drop into folders; skipped rather than reported.
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file it concerns and what is wrong, with the value."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DatasetError(ValueError):
    """A dataset that cannot be used; the message lists every problem, one per line.

    Constructible from a message alone, as torch's DataLoader re-raises worker errors that way.
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    @classmethod
    def from_problems(cls, what: str, problems: Sequence[Problem]) -> DatasetError:
        lines = "\n".join(f"  {p}" for p in problems)
        return cls(f"{what}: {len(problems)} problem(s):\n{lines}", problems)

    def __reduce__(self) -> tuple[type, tuple[str, list[Problem]]]:
        # Keep the problems when the error crosses a process boundary (DataLoader workers).
        return type(self), (str(self), self.problems)


# ---------------------------------------------------------------------------------- the YAML
@dataclass(frozen=True)
class FolderLayout:
    """Where a dataset's files are and what its mask values mean.

    Attributes:
        declaration: None when the YAML's ``labels`` block is missing or invalid (the files
            can still be checked, their values cannot).
    """

    yaml_path: Path
    name: str
    images_dir: Path
    masks_dir: Path
    declaration: LabelDeclaration | None


def read_layout(yaml_path: str | Path) -> tuple[FolderLayout | None, list[Problem]]:
    """Parse a dataset YAML. Returns the layout (None if the YAML is unusable) and its problems."""
    yaml_path = Path(yaml_path)
    where = str(yaml_path)
    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        return None, [Problem(where, f"cannot read the dataset YAML: {_one_line(error)}")]
    if not isinstance(config, Mapping):
        kind = "empty" if config is None else f"a {type(config).__name__}"
        return None, [
            Problem(
                where, f"the dataset YAML must be a mapping with keys {list(YAML_KEYS)}, got {kind}"
            )
        ]
    problems: list[Problem] = []
    unknown = sorted(str(k) for k in config if k not in YAML_KEYS)
    if unknown:
        problems.append(Problem(where, f"unknown key(s) {unknown}; allowed: {list(YAML_KEYS)}"))
    name = _string_key(config, "name", yaml_path.stem, where, problems)
    root = yaml_path.parent
    images_dir = root / Path(_string_key(config, "images", "images", where, problems)).expanduser()
    masks_dir = root / Path(_string_key(config, "masks", "masks", where, problems)).expanduser()
    declaration = _read_declaration(config, name, where, problems)
    return FolderLayout(yaml_path, name, images_dir, masks_dir, declaration), problems


def _string_key(
    config: Mapping[str, Any], key: str, default: str, where: str, problems: list[Problem]
) -> str:
    value = config.get(key, default)
    if isinstance(value, str) and value:
        return value
    problems.append(Problem(where, f"'{key}' must be a non-empty string, got {value!r}"))
    return default


def _read_declaration(
    config: Mapping[str, Any], name: str, where: str, problems: list[Problem]
) -> LabelDeclaration | None:
    if "labels" not in config:
        problems.append(Problem(where, "missing key 'labels' (what each mask value means)"))
        return None
    labels = config["labels"]
    if not isinstance(labels, Mapping):
        problems.append(Problem(where, f"'labels' must be a mapping with 'values', got {labels!r}"))
        return None
    try:
        return LabelDeclaration.from_config(name, labels)
    except (ValueError, TypeError) as error:
        problems.append(Problem(where, f"invalid labels: {error}"))
        return None


# ---------------------------------------------------------------------------------- the files
@dataclass(frozen=True)
class FilePairs:
    """Images and their masks, sorted by stem so that index ``i`` is the same on every run."""

    stems: tuple[str, ...]
    images: tuple[Path, ...]
    masks: tuple[Path, ...]


def pair_files(layout: FolderLayout) -> tuple[FilePairs, list[Problem]]:
    """Match ``images/`` and ``masks/`` by stem, without reading the files."""
    images, problems = _files_by_stem(layout.images_dir, IMAGE_SUFFIXES, "image")
    masks, mask_problems = _files_by_stem(layout.masks_dir, MASK_SUFFIXES, "mask")
    problems += mask_problems
    empty = FilePairs((), (), ())
    if not layout.images_dir.is_dir() or not layout.masks_dir.is_dir():
        return empty, problems
    if not images:
        problems.append(
            Problem(
                str(layout.images_dir),
                f"empty dataset: no images ({', '.join(IMAGE_SUFFIXES)}) found; sub-folders "
                "are not searched",
            )
        )
        return empty, problems
    for stem, path in images.items():
        if stem not in masks:
            expected = layout.masks_dir / f"{stem}.png"
            problems.append(Problem(str(path), f"image has no mask: expected {expected}"))
    for stem, path in masks.items():
        if stem not in images:
            problems.append(
                Problem(
                    str(path),
                    f"mask has no image: expected {layout.images_dir / stem}"
                    f"{', '.join(IMAGE_SUFFIXES)}",
                )
            )
    stems = tuple(sorted(s for s in images if s in masks))
    if not stems:
        problems.append(
            Problem(str(layout.images_dir), "empty dataset: no image has a mask with its stem")
        )
    pairs = FilePairs(stems, tuple(images[s] for s in stems), tuple(masks[s] for s in stems))
    return pairs, problems


def _files_by_stem(
    folder: Path, suffixes: Sequence[str], kind: str
) -> tuple[dict[str, Path], list[Problem]]:
    if not folder.is_dir():
        return {}, [Problem(str(folder), f"{kind}s folder not found (set '{kind}s:' in the YAML)")]
    problems: list[Problem] = []
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.lower() in _JUNK_FILES or path.is_dir():
            continue
        if path.suffix.lower() not in suffixes:
            hint = " (JPEG compression changes label values)" if kind == "mask" else ""
            article = "an" if kind[0] in "aeiou" else "a"
            problems.append(
                Problem(
                    str(path), f"not {article} {kind} file: expected {'/'.join(suffixes)}{hint}"
                )
            )
            continue
        by_stem[path.stem].append(path)
    files: dict[str, Path] = {}
    for stem, paths in by_stem.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            problems.append(Problem(str(paths[0]), f"several {kind}s with stem {stem!r}: {names}"))
        files[stem] = paths[0]
    return files, problems


# ---------------------------------------------------------------------------------- reading
def decode(path: str | Path, kind: str) -> Image.Image:
    """Open and fully decode an image file (``Image.open`` alone reads only the header, so a
    PNG cut in half would pass). Raises :class:`DatasetError` naming the file."""
    try:
        with Image.open(path) as img:
            img.load()  # the pixels stay in memory after the file is closed
    except Exception as error:  # PIL raises OSError, SyntaxError, zlib.error, ValueError...
        problem = Problem(str(path), f"cannot read {kind}: {_one_line(error)}")
        raise DatasetError(str(problem), [problem]) from error
    return img


def mask_mode_problem(mask: Image.Image) -> str | None:
    """Why a decoded mask's mode cannot hold label values, or None."""
    if mask.mode in MASK_MODES:
        return None
    return (
        f"mask mode is {mask.mode!r}; expected 'L' (grayscale) or 'P' (indexed) with the label "
        "value as the pixel value (colour-coded masks must be converted to values first)"
    )


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grayscale and palette images are converted."""
    return np.array(decode(path, "image").convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) uint8 label values: grayscale values or palette indices."""
    mask = decode(path, "mask")
    problem = mask_mode_problem(mask)
    if problem is not None:
        raise DatasetError(f"{path}: {problem}", [Problem(str(path), problem)])
    # np.array, not asarray: a writable copy that augmentations may modify in place.
    return np.array(mask, dtype=np.uint8)


def size_mismatch(image_size: tuple[int, int], mask_size: tuple[int, int], image: Path) -> str:
    """Message for a mask whose (W, H) differs from its image's."""
    message = (
        f"mask size {mask_size[0]}x{mask_size[1]} does not match image size "
        f"{image_size[0]}x{image_size[1]} ({image})"
    )
    if mask_size == image_size[::-1]:
        message += "; the sizes are transposed: check the image's EXIF orientation"
    return message


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---------------------------------------------------------------------------------- the dataset
class FolderDataset:
    """A dataset folder as a :class:`~incremental.data.base.SegmentationSource`.

    Args:
        yaml_path: the dataset's YAML.
        validate: decode every file once and refuse undeclared values, bad modes, sizes and
            unreadable files. The YAML, the folders and the image-mask pairing are always
            checked (they cost no decoding).
        classes: class names the experiment knows; names in the YAML outside them are refused.
        transition: the step; names in the YAML must resolve through it (see
            :class:`~incremental.labels.CandidateSetTable`).

    Raises:
        DatasetError: listing every problem found.

    Attributes:
        declaration: what the mask values mean.
        name: the dataset's name.
        stems: file stems, sorted; sample ``i`` is ``images/<stems[i]>.*``.
        image_paths, mask_paths: the files, in the order of ``stems``.
    """

    def __init__(
        self,
        yaml_path: str | Path,
        *,
        validate: bool = True,
        classes: Sequence[str] | None = None,
        transition: Transition | None = None,
    ) -> None:
        # Imported here because the check builds on this module's readers.
        from incremental.data.check import inspect_dataset

        report = inspect_dataset(yaml_path, classes, transition, decode=validate)
        if report.problems:
            raise DatasetError.from_problems(f"dataset {yaml_path}", report.problems)
        assert report.layout is not None and report.layout.declaration is not None
        self.yaml_path = Path(yaml_path)
        self.name = report.layout.name
        self.declaration: LabelDeclaration = report.layout.declaration
        self.stems = list(report.pairs.stems)
        self.image_paths = list(report.pairs.images)
        self.mask_paths = list(report.pairs.masks)

    def __len__(self) -> int:
        return len(self.stems)

    def __repr__(self) -> str:
        return f"FolderDataset({str(self.yaml_path)!r}, name={self.name!r}, images={len(self)})"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and mask (H, W) uint8 of sample ``index``.

        Raises:
            DatasetError: naming the file, if it is unreadable, has a wrong mode or size (a
                dataset built with ``validate=False``, or a file changed since).
        """
        image_path, mask_path = self.image_paths[index], self.mask_paths[index]
        image, mask = read_image(image_path), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            (h, w), (mh, mw) = image.shape[:2], mask.shape
            message = size_mismatch((w, h), (mw, mh), image_path)
            raise DatasetError(f"{mask_path}: {message}", [Problem(str(mask_path), message)])
        return image, mask
