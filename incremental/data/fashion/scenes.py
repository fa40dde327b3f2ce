"""Deterministic "Fashion scenes": real Fashion-MNIST photos composed on cluttered backgrounds.

Each scene is a textured background (colour gradient + noise/stripes/checker texture + a few
clutter shapes) with several tinted Fashion-MNIST items alpha-blended on top. Next to the RGB
image comes an exact item map: the Fashion-MNIST class id of the visible item at each pixel,
-1 for background. Scene ``i`` of ``compose_scenes(seed=s)`` depends only on ``(s, i)``.
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "SceneStyle",
    "compose_scene",
    "compose_scenes",
    "split_item_pools",
]

#: Value of the item map where no item is visible.
BACKGROUND = -1

_PHOTO_SIDE = 28  # Fashion-MNIST photos are 28 x 28.
_MAX_COVER = 0.7  # A new item may hide at most this fraction of an earlier item's visible area...
_PLACEMENT_TRIES = 8  # ...else its position is redrawn up to this many times (best one kept).


@dataclass(frozen=True)
class SceneStyle:
    """How scenes look.

    Attributes:
        image_size: side of the square scene in pixels.
        items_per_scene: inclusive range of optional items per scene (required ones come on top).
        item_scale: item side = 28 * scale pixels, scale uniform in this range.
        clutter: number of background clutter shapes (never in the item map).
        mask_threshold: resized photo intensity (0-255) above which a pixel belongs to the item.
    """

    image_size: int = 64
    items_per_scene: tuple[int, int] = (2, 4)
    item_scale: tuple[float, float] = (0.8, 1.5)
    clutter: int = 3
    mask_threshold: int = 40

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        low, high = self.items_per_scene
        if not 0 <= low <= high:
            raise ValueError(f"items_per_scene must be 0 <= low <= high, got {(low, high)}")
        low_scale, high_scale = self.item_scale
        if not 0 < low_scale <= high_scale:
            raise ValueError(f"item_scale must be 0 < low <= high, got {self.item_scale}")
        if self.clutter < 0:
            raise ValueError(f"clutter must be >= 0, got {self.clutter}")
        if not 0 <= self.mask_threshold < 255:
            raise ValueError(f"mask_threshold must be in 0..254, got {self.mask_threshold}")


# --------------------------------------------------------------------------------------------
# Item pools
# --------------------------------------------------------------------------------------------


def split_item_pools(
    labels: np.ndarray, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, np.ndarray]:
    """Split photo indices into disjoint train/val/test pools, stratified per class.

    Args:
        labels: (N,) Fashion-MNIST class ids.
        fractions: shares of train, val, test; non-negative, summing to 1.
        seed: the split is a deterministic function of ``labels`` and ``seed``.

    Returns:
        {"train", "val", "test"} -> sorted int64 index arrays into ``labels``; together they
        cover every index once. Each class is split by cumulative rounding of its count.
    """
    labels = np.asarray(labels)
    shares = np.asarray(fractions, dtype=np.float64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if shares.shape != (3,) or (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):  # sorted, so the rng stream is consumed in a fixed order
        members = rng.permutation(np.flatnonzero(labels == cls))
        bounds = np.round(np.cumsum(shares) * len(members)).astype(np.int64)
        for part, chunk in zip(parts, np.split(members, bounds[:2]), strict=True):
            part.append(chunk)
    return {
        name: np.sort(np.concatenate(chunks)).astype(np.int64)
        for name, chunks in zip(("train", "val", "test"), parts, strict=True)
    }


def _pool_by_class(labels: np.ndarray, pool: np.ndarray) -> dict[int, np.ndarray]:
    """Class id -> the indices of ``pool`` (into ``labels``) with that class, in pool order."""
    pool = np.asarray(pool, dtype=np.int64)
    pool_labels = np.asarray(labels)[pool]
    return {int(cls): pool[pool_labels == cls] for cls in np.unique(pool_labels)}


# --------------------------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (ys, xs), each (size, size) float32, read-only (cached)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


@functools.lru_cache(maxsize=64)
def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float32 bilinear interpolation weights: ``M @ v`` resamples ``v``."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.minimum(np.floor(pos).astype(np.int64), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    frac = pos - low
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    matrix[rows, low] = 1 - frac
    if n_in > 1:
        matrix[rows, low + 1] += frac
    matrix.flags.writeable = False
    return matrix


def _hsv(rng: np.random.Generator, hue: float, sat: tuple[float, float], val: tuple[float, float]):
    """(3,) float32 RGB in [0, 1] of the given hue with saturation/value uniform in ranges."""
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, s, v), dtype=np.float32)


def _rotated(size: int, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates relative to (cy, cx), rotated by ``angle``: (u, v) each (H, W)."""
    ys, xs = _grid(size)
    dy, dx = ys - np.float32(cy), xs - np.float32(cx)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return dx * cos + dy * sin, dy * cos - dx * sin


# --------------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------------


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) float32 texture in about [-1, 1]: smooth noise, stripes or a checker."""
    kind = rng.integers(3)
    scale = size / 64  # periods are designed for 64 px and scale with the image
    if kind == 0:  # two octaves of value noise: walls, fabric, floors
        out = np.zeros((size, size), dtype=np.float32)
        cells = int(rng.integers(3, 7))
        for octave, amplitude in ((1, 1.0), (3, 0.5)):
            n = cells * octave
            coarse = rng.standard_normal((n, n)).astype(np.float32)
            up = _upsample_matrix(size, n)
            out += amplitude * (up @ coarse @ up.T)
        return out / max(float(np.abs(out).max()), 1e-6)
    # Stripes and checkers: periodic patterns, softened by tanh so edges vary soft..hard.
    u, v = _rotated(size, 0.0, 0.0, rng.uniform(0, np.pi))
    sharpness = rng.uniform(0.7, 4.0)
    if kind == 1:
        period = rng.uniform(5, 14) * scale
        wave = np.sin(u * np.float32(2 * np.pi / period))
    else:
        period = rng.uniform(8, 20) * scale
        step = np.float32(2 * np.pi / period)
        wave = np.sin(u * step) * np.sin(v * step) * 2
    return (np.tanh(sharpness * wave) / np.tanh(sharpness)).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: random-hue gradient with a texture of moderate contrast."""
    hue = rng.random()
    # Muted colours and mid values, so tinted items stand out against the background.
    start = _hsv(rng, hue, (0.1, 0.55), (0.3, 0.75))
    end = _hsv(rng, hue + rng.uniform(-0.15, 0.15), (0.1, 0.55), (0.3, 0.75))
    u, _ = _rotated(size, size / 2, size / 2, rng.uniform(0, 2 * np.pi))
    t = np.clip(u / np.float32(size * 1.42) + np.float32(0.5), 0, 1)[..., None]
    canvas = start * (1 - t) + end * t
    contrast = np.float32(rng.uniform(0.05, 0.14))
    # Texture in a second colour direction, so it reads as pattern, not only brightness.
    tint = _hsv(rng, hue + rng.uniform(0.3, 0.7), (0.0, 0.5), (0.6, 1.0))
    canvas += (contrast * _texture(rng, size))[..., None] * tint
    return canvas


def _coverage(distance: np.ndarray) -> np.ndarray:
    """Anti-aliased fill fraction from a signed distance in pixels (negative = inside)."""
    return np.clip(np.float32(0.5) - distance, 0, 1)


def _clutter_shape(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) float32 coverage of one random ellipse, rectangle or line."""
    kind = rng.integers(3)
    scale = size / 64
    cy, cx = rng.uniform(0, size, 2)
    u, v = _rotated(size, cy, cx, rng.uniform(0, np.pi))
    if kind == 0:  # ellipse; radial distance approximated in units of the shorter radius
        a, b = rng.uniform(3, 13, 2) * scale
        r = np.sqrt((u / np.float32(a)) ** 2 + (v / np.float32(b)) ** 2)
        return _coverage((r - 1) * np.float32(min(a, b)))
    if kind == 1:  # rectangle
        a, b = rng.uniform(3, 12, 2) * scale
    else:  # line: a long thin rectangle
        a, b = rng.uniform(10, 30) * scale, rng.uniform(0.5, 1.3) * scale
    return _coverage(np.maximum(np.abs(u) - np.float32(a), np.abs(v) - np.float32(b)))


def _add_clutter(rng: np.random.Generator, canvas: np.ndarray, count: int) -> None:
    """Paint ``count`` semi-opaque random shapes onto ``canvas`` (H, W, 3) in place."""
    size = canvas.shape[0]
    for _ in range(count):
        alpha = _clutter_shape(rng, size) * np.float32(rng.uniform(0.45, 0.85))
        colour = _hsv(rng, rng.random(), (0.05, 0.6), (0.2, 0.85))
        canvas += alpha[..., None] * (colour - canvas)


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


def _item_photo(rng: np.random.Generator, photo: np.ndarray, style: SceneStyle) -> np.ndarray:
    """(S, S) uint8: ``photo`` resized bilinearly to side 28 * scale (<= scene), maybe flipped."""
    side = int(round(_PHOTO_SIDE * rng.uniform(*style.item_scale)))
    side = min(max(side, 1), style.image_size)
    resized = np.asarray(Image.fromarray(photo).resize((side, side), Image.BILINEAR))
    return resized[:, ::-1] if rng.random() < 0.5 else resized


def _place(
    rng: np.random.Generator, mask: np.ndarray, instances: np.ndarray, num_drawn: int
) -> tuple[int, int]:
    """Top-left (y, x) for an item of footprint ``mask`` (S, S) inside the scene.

    Redraws the position while it would hide more than ``_MAX_COVER`` of an earlier item's
    visible area (``instances`` (H, W): instance id or -1), keeping the least harmful try.
    """
    size, side = instances.shape[0], mask.shape[0]
    if num_drawn == 0:
        y, x = rng.integers(0, size - side + 1, 2)
        return int(y), int(x)
    visible = np.bincount(instances.ravel() + 1, minlength=num_drawn + 1)[1:]
    best, best_cover = (0, 0), np.inf
    for _ in range(_PLACEMENT_TRIES):
        y, x = (int(p) for p in rng.integers(0, size - side + 1, 2))
        under = instances[y : y + side, x : x + side][mask]
        hidden = np.bincount(under + 1, minlength=num_drawn + 1)[1:]
        cover = float((hidden / np.maximum(visible, 1)).max())
        if cover < best_cover:
            best, best_cover = (y, x), cover
        if cover <= _MAX_COVER:
            break
    return best


def _draw_item(
    rng: np.random.Generator,
    canvas: np.ndarray,
    instances: np.ndarray,
    photo: np.ndarray,
    instance: int,
    style: SceneStyle,
) -> None:
    """Tint, place and alpha-blend one photo onto ``canvas`` (H, W, 3) and ``instances`` (H, W)."""
    item = _item_photo(rng, photo, style)
    mask = item > style.mask_threshold
    y, x = _place(rng, mask, instances, instance)
    side = item.shape[0]
    colour = _hsv(rng, rng.random(), (0.35, 0.95), (0.7, 1.0))
    colour *= np.float32(rng.uniform(0.85, 1.15))  # brightness jitter
    intensity = (item.astype(np.float32) / 255)[..., None]
    # Opacity reaches 1/2 exactly at the mask threshold: a pixel is in the item map iff the
    # item dominates its blend. Plain intensity/255 would leave dark garments see-through.
    alpha = np.minimum(intensity * np.float32(255 / max(2 * style.mask_threshold, 1)), 1)
    _drop_shadow(canvas, alpha, y, x)
    # Shading by the photo's own intensity keeps its folds, seams and prints visible.
    region = canvas[y : y + side, x : x + side]
    region += alpha * (colour * intensity - region)
    instances[y : y + side, x : x + side][mask] = instance


def _drop_shadow(canvas: np.ndarray, alpha: np.ndarray, y: int, x: int) -> None:
    """Darken ``canvas`` under ``alpha`` (S, S, 1) shifted down-right: items sit on the scene."""
    offset = max(1, canvas.shape[0] // 48)
    height = min(alpha.shape[0], canvas.shape[0] - y - offset)
    width = min(alpha.shape[1], canvas.shape[1] - x - offset)
    if height > 0 and width > 0:
        under = canvas[y + offset : y + offset + height, x + offset : x + offset + width]
        under *= 1 - np.float32(0.35) * alpha[:height, :width]


def _finish(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 photo: mild sensor noise, then quantised."""
    noise = rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(0.012)
    return (np.clip(canvas + noise, 0, 1) * 255 + 0.5).astype(np.uint8)


def _compose(
    rng: np.random.Generator,
    images: np.ndarray,
    by_class: dict[int, np.ndarray],
    required: Sequence[int],
    optional: Sequence[int],
    weights: np.ndarray | None,
    style: SceneStyle,
) -> tuple[np.ndarray, np.ndarray]:
    """``compose_scene`` with the pool already grouped by class and weights normalised."""
    size = style.image_size
    canvas = _background(rng, size)
    _add_clutter(rng, canvas, style.clutter)

    low, high = style.items_per_scene
    count = int(rng.integers(low, high + 1)) if len(optional) else 0
    drawn = [int(optional[i]) for i in rng.choice(len(optional), count, p=weights)] if count else []
    # Required items go last (on top) so they stay visible; their mutual order is random.
    drawn += [int(required[i]) for i in rng.permutation(len(required))]

    instances = np.full((size, size), BACKGROUND, dtype=np.int16)
    for instance, cls in enumerate(drawn):
        candidates = by_class[cls]
        photo = images[candidates[rng.integers(len(candidates))]]
        _draw_item(rng, canvas, instances, photo, instance, style)

    # Instance -> class lookup; index -1 (background) picks the appended BACKGROUND.
    lookup = np.array([*drawn, BACKGROUND], dtype=np.int16)
    return _finish(rng, canvas), lookup[instances]


def _check_classes(by_class: dict[int, np.ndarray], classes: Sequence[int], what: str) -> None:
    missing = sorted({int(c) for c in classes} - by_class.keys())
    if missing:
        raise ValueError(f"{what} classes {missing} have no images in the pool")


def _normalised(optional: Sequence[int], weights: Sequence[float] | None) -> np.ndarray | None:
    """Optional-class probabilities (K,) float64, or None for uniform."""
    if weights is None:
        return None
    p = np.asarray(weights, dtype=np.float64)
    if p.shape != (len(optional),) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(
            f"optional_weights must be {len(optional)} non-negative numbers with a positive "
            f"sum, got {weights}"
        )
    return p / p.sum()


def _prepare(labels, pool, required, optional, optional_weights):
    """Shared argument checks: (by_class, weights)."""
    by_class = _pool_by_class(labels, pool)
    weights = _normalised(optional, optional_weights)
    _check_classes(by_class, required, "required")
    usable = (
        optional
        if weights is None
        else [c for c, w in zip(optional, weights, strict=True) if w > 0]
    )
    _check_classes(by_class, usable, "optional")
    return by_class, weights


def compose_scene(
    rng: np.random.Generator,
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    required: Sequence[int],
    optional: Sequence[int],
    optional_weights: Sequence[float] | None,
    style: SceneStyle,
) -> tuple[np.ndarray, np.ndarray]:
    """Compose one scene.

    Args:
        rng: the only source of randomness.
        images: (N, 28, 28) uint8 Fashion-MNIST photos; labels: (N,) their class ids.
        pool: indices into ``images`` that items may use (e.g. one of ``split_item_pools``).
        required: class ids that each appear once, drawn last (on top) in random order.
        optional: class ids for the n ~ uniform(style.items_per_scene) other items.
        optional_weights: class probabilities for ``optional`` (normalised); None = uniform.
        style: sizes and looks.

    Returns:
        image (H, W, 3) uint8 and item map (H, W) int16: the class id of the visible item at
        each pixel (its resized intensity > mask_threshold and no later item covers it), else -1.
    """
    by_class, weights = _prepare(labels, pool, required, optional, optional_weights)
    return _compose(rng, images, by_class, required, optional, weights, style)


def compose_scenes(
    num_scenes: int,
    seed: int,
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    required: Sequence[int],
    optional: Sequence[int],
    optional_weights: Sequence[float] | None,
    style: SceneStyle,
    required_count: tuple[int, int] = (1, 1),
) -> tuple[np.ndarray, np.ndarray]:
    """Compose ``num_scenes`` scenes; scene i uses ``np.random.default_rng([seed, i])``.

    Each scene draws k uniform in ``required_count`` (inclusive) and k required classes uniformly
    (with replacement) from ``required`` (none if it is empty), then composes the scene as
    :func:`compose_scene` does with those k classes required. Scene i therefore does not depend
    on ``num_scenes`` and can be regenerated alone.

    Returns:
        images (N, H, W, 3) uint8 and item maps (N, H, W) int16 (-1 = background).
    """
    low, high = required_count
    if not 0 <= low <= high:
        raise ValueError(f"required_count must be 0 <= low <= high, got {required_count}")
    by_class, weights = _prepare(labels, pool, required, optional, optional_weights)
    size = style.image_size
    out_images = np.empty((num_scenes, size, size, 3), dtype=np.uint8)
    out_maps = np.empty((num_scenes, size, size), dtype=np.int16)
    for i in range(num_scenes):
        rng = np.random.default_rng([seed, i])
        k = int(rng.integers(low, high + 1))
        picked = (
            [int(required[j]) for j in rng.integers(0, len(required), k)] if len(required) else []
        )
        out_images[i], out_maps[i] = _compose(
            rng, images, by_class, picked, optional, weights, style
        )
    return out_images, out_maps
