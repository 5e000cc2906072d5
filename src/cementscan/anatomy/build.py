"""Putting the anatomy together: classical image processing, or TotalSegmentator masks imported."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cementscan.anatomy.body import body_mask, bone_mask
from cementscan.anatomy.grid import make_work_grid
from cementscan.anatomy.imported import anatomy_from_classes, read_class_masks
from cementscan.anatomy.model import Anatomy
from cementscan.anatomy.spine import canal_centerline
from cementscan.io.volume import CTVolume


def compute_anatomy(volume: CTVolume, masks_path: Path | None = None) -> Anatomy:
    """The Anatomy of one CT series: classical by default, from TotalSegmentator masks when
    ``masks_path`` is given.

    >>> anatomy = compute_anatomy(load_volume("ct.nii.gz"))  # doctest: +SKIP
    >>> [v.level for v in anatomy.vertebrae]  # doctest: +SKIP
    ['T11', 'T12', 'L1', ...]
    """
    grid = make_work_grid(volume)
    if masks_path is not None:
        return anatomy_from_classes(read_class_masks(masks_path, grid), grid)
    body = body_mask(grid)
    masks: dict[str, np.ndarray] = {"body": body, "bone": bone_mask(grid, body)}
    canal = canal_centerline(grid, body)
    return Anatomy(
        grid=grid,
        masks=masks,
        canal_centerline_lps_mm=grid.to_lps(canal) if len(canal) else np.zeros((0, 3)),
        warnings=("vertebral levels, lungs and the venous route are not found by this version",),
    )
