"""Writing volumes and label maps to NIfTI on a CTVolume's own grid, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cementscan.atomic import atomic_path
from cementscan.io.volume import CTVolume


def to_sitk(array_ijk: np.ndarray, like: CTVolume) -> sitk.Image:
    """A SimpleITK image of ``array_ijk`` (indexed [i, j, k]) with ``like``'s geometry."""
    if array_ijk.shape != like.shape:
        raise ValueError(f"array shape {array_ijk.shape} differs from the volume's {like.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in like.spacing_mm])
    image.SetOrigin([float(o) for o in like.origin_lps_mm])
    image.SetDirection([float(d) for d in like.direction.ravel()])
    return image


def write_image_atomic(image: sitk.Image, path: str | Path) -> Path:
    """Write ``image`` (format from the suffix) under a temporary name, then rename it into place."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return Path(path)


def write_volume(volume: CTVolume, path: str | Path) -> Path:
    """Write the volume's HU as int16 NIfTI (or NRRD/MHA by suffix) in its own geometry."""
    return write_image_atomic(to_sitk(volume.hu.astype(np.int16, copy=False), volume), path)


def write_labels(labels_ijk: np.ndarray, like: CTVolume, path: str | Path) -> Path:
    """Write an integer label map on ``like``'s grid (uint8 when it fits, else uint16)."""
    dtype = np.uint8 if int(labels_ijk.max(initial=0)) < 256 else np.uint16
    return write_image_atomic(to_sitk(labels_ijk.astype(dtype, copy=False), like), path)
