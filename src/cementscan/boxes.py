"""Box-shaped work on voxel masks, shared by the stages: a crop box grown by a margin, and a
dilation by a box (separable maximum filters: a 3-D structuring element costs seconds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def grow_box(
    box: tuple[slice, ...], margin: Sequence[int], shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """``box`` grown by ``margin`` voxels on each side of each axis, clipped to ``shape``."""
    return tuple(
        slice(max(0, s.start - m), min(n, s.stop + m))
        for s, m, n in zip(box, margin, shape, strict=True)
    )


def dilate_box(mask: np.ndarray, half_width: Sequence[int]) -> np.ndarray:
    """``mask`` dilated by a box of ``half_width`` voxels per axis (nothing beyond the array)."""
    out = mask.astype(np.uint8)
    for axis, h in enumerate(half_width):
        out = ndimage.maximum_filter1d(out, size=2 * h + 1, axis=axis, mode="constant")
    return out.astype(bool)
