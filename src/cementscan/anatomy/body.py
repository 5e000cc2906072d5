"""Body and bone masks on the working grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cementscan.anatomy.grid import WorkGrid

BODY_HU = -400  # between air/lung (< -500) and fat (-100)
BONE_HU = 200  # cortical bone and dense trabecular bone; osteoporotic cores fall below it


def largest_component(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=structure)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes_axial(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice in z (the lungs are holes of the body in every axial slice)."""
    filled = np.empty_like(mask, dtype=bool)
    for k in range(mask.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return filled


def body_mask(grid: WorkGrid) -> np.ndarray:
    """The patient: the largest soft-tissue-or-denser component, lungs and bowel gas filled in.

    A 2 mm opening first cuts thin links to the table and to clothing.
    """
    dense = ndimage.binary_opening(grid.hu > BODY_HU, iterations=1)
    return fill_holes_axial(largest_component(dense))


def bone_mask(grid: WorkGrid, body: np.ndarray) -> np.ndarray:
    return (grid.hu >= BONE_HU) & body
