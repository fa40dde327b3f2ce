"""The colour palette of predicted masks (PASCAL VOC's bit-interleaved palette)."""

from __future__ import annotations

import numpy as np


def class_palette(num_colours: int = 256) -> np.ndarray:
    """(num_colours, 3) uint8; class 0 is black, neighbours get distinct colours."""
    palette = np.zeros((num_colours, 3), dtype=np.uint8)
    for index in range(num_colours):
        value, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = colour
    return palette
