"""A dataset folder's YAML and files: where they are, what the mask values mean, which image
goes with which mask. Nothing here decodes a file (:mod:`incremental.data.folders.check` does).

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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from incremental.data.core import Problem, one_line
from incremental.labels import LabelDeclaration

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: JPEG compression invents values at label borders, so masks must be lossless PNG.
MASK_SUFFIXES = (".png",)
YAML_KEYS = ("name", "images", "masks", "labels")
#: Files that operating systems drop into folders; skipped rather than reported.
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})


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
        return None, [Problem(where, f"cannot read the dataset YAML: {one_line(error)}")]
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
