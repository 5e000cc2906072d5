"""Body and bone masks on the working grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cementscan.anatomy.grid import WorkGrid

BODY_HU = -400  # between air/lung (< -500) and fat (-100)
BONE_HU = 200  # cortical bone and dense trabecular bone; osteoporotic cores fall below it


# Component labels counted with np.bincount are made as intp: bincount would otherwise convert a
# whole-grid int32 label array first, which costs more than the count.
LABEL_DTYPE = np.intp


def largest_component(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=structure, output=LABEL_DTYPE)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


# 4-connectivity within each axial slice, none across slices: labels every slice's 2-D components.
IN_PLANE = np.zeros((3, 3, 3), bool)
IN_PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def fill_holes(mask: np.ndarray, axial_only: bool = False) -> np.ndarray:
    """Fill holes in 3-D or in every axial slice at once, by labelling the background (one
    labelling pass instead of ndimage.binary_fill_holes' iterated dilations; the same result
    as binary_fill_holes in 3-D or slice by slice)."""
    structure = IN_PLANE if axial_only else None
    background, count = ndimage.label(~mask, structure=structure)
    if count == 0:
        return mask.copy()
    outside = np.zeros(count + 1, bool)
    border_axes = (0, 1) if axial_only else (0, 1, 2)
    for axis in border_axes:
        for end in (0, -1):
            outside[np.unique(np.take(background, end, axis=axis))] = True
    outside[0] = False
    return ~outside[background]


def fill_holes_axial(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice in z (the lungs are holes of the body in every axial slice)."""
    return fill_holes(mask, axial_only=True)


def body_mask(grid: WorkGrid) -> np.ndarray:
    """The patient: the largest soft-tissue-or-denser component, lungs and bowel gas filled in.

    A 2 mm opening first cuts thin links to the table and to clothing.
    """
    dense = ndimage.binary_opening(grid.hu > BODY_HU, iterations=1)
    return fill_holes_axial(largest_component(dense))


def bone_mask(grid: WorkGrid, body: np.ndarray) -> np.ndarray:
    return (grid.hu >= BONE_HU) & body
