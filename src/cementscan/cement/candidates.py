"""Cement candidates straight from the CT's density: hysteresis threshold and connected components."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cementscan.io.volume import CTVolume

# Placeholder thresholds until per-scan calibration lands (issue #4). Cement HU is UNCONFIRMED in
# the literature (clinical-evidence.md §4): opacified PMMA is "extremely high attenuating", and
# cortical bone reaches ~1,900 HU, so seeds must be denser than most cortex.
SEED_HU = 1800
GROW_HU = 1200
MIN_VOXELS = 2


@dataclass(frozen=True)
class Candidate:
    """One connected dense component, measured in the volume's own voxels and in LPS mm."""

    label: int  # its value in Candidates.labels
    voxel_count: int
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    bbox_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]]
    length_mm: float
    max_diameter_mm: float
    mean_hu: float
    max_hu: float


@dataclass(frozen=True, eq=False)
class Candidates:
    labels: np.ndarray  # int32 [i, j, k]; 0 background, n = candidates[n - 1]
    candidates: tuple[Candidate, ...]


def find_candidates(volume: CTVolume, seed_hu: int = SEED_HU, grow_hu: int = GROW_HU) -> Candidates:
    """Components of voxels >= ``grow_hu`` that contain at least one voxel >= ``seed_hu``."""
    hu = volume.hu
    grown, count = ndimage.label(hu >= grow_hu, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return Candidates(np.zeros(hu.shape, np.int32), ())
    seeded = np.zeros(count + 1, bool)
    seeded[np.unique(grown[hu >= seed_hu])] = True
    seeded[0] = False
    keep = np.flatnonzero(seeded)
    relabel = np.zeros(count + 1, np.int32)
    relabel[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    labels = relabel[grown]
    slices = ndimage.find_objects(labels)
    measured: list[Candidate] = []
    final = np.zeros(len(keep) + 1, np.int32)
    for index, box in enumerate(slices, start=1):
        if box is None:
            continue
        mask = labels[box] == index
        if int(mask.sum()) < MIN_VOXELS:
            continue
        final[index] = len(measured) + 1
        measured.append(_measure(volume, box, mask, label=len(measured) + 1))
    return Candidates(final[labels], tuple(measured))


def _measure(volume: CTVolume, box: tuple[slice, ...], mask: np.ndarray, label: int) -> Candidate:
    offset = np.array([s.start for s in box])
    ijk = np.argwhere(mask) + offset
    lps = volume.index_to_lps(ijk)
    values = volume.hu[box][mask].astype(float)
    centroid = lps.mean(axis=0)
    length_mm, diameter_mm = _extents_mm(lps, min(volume.spacing_mm))
    low, high = lps.min(axis=0), lps.max(axis=0)
    return Candidate(
        label=label,
        voxel_count=len(ijk),
        volume_ml=len(ijk) * volume.voxel_volume_ml,
        centroid_lps_mm=_point(centroid),
        bbox_lps_mm=(_point(low), _point(high)),
        length_mm=length_mm,
        max_diameter_mm=diameter_mm,
        mean_hu=float(values.mean()),
        max_hu=float(values.max()),
    )


def _extents_mm(points_mm: np.ndarray, voxel_mm: float) -> tuple[float, float]:
    """Extent along the first and second principal axes (plus one voxel for the voxel's own size)."""
    if len(points_mm) < 2:
        return voxel_mm, voxel_mm
    centred = points_mm - points_mm.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ axes.T
    spans = projected.max(axis=0) - projected.min(axis=0) + voxel_mm
    return float(spans[0]), float(spans[1]) if len(spans) > 1 else voxel_mm


def _point(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
