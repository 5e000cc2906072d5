"""Naming and measuring candidates as findings: category, side, shape (anatomy-free fallbacks for now)."""

from __future__ import annotations

import numpy as np

from cementscan.cement.candidates import Candidate, Candidates
from cementscan.findings.model import Finding
from cementscan.io.volume import CTVolume

MIDLINE_HALF_WIDTH_MM = 5.0  # DESIGN.md §3: "midline" within ±5 mm of the canal centre
LINEAR_ASPECT = 3.0
NODULAR_ASPECT = 2.0
NODULAR_MAX_ML = 0.5
# Dense bone marks the spine, which sits on the midline; used as the midline until the anatomy
# stage gives the spinal canal (issue #3).
BONE_HU = 200
PLACEHOLDER_CONFIDENCE = 0.5


def side_of(x_mm: float, midline_x_mm: float) -> str:
    """The patient's side of a point: LPS x grows toward the patient's left."""
    if abs(x_mm - midline_x_mm) <= MIDLINE_HALF_WIDTH_MM:
        return "midline"
    return "right" if x_mm < midline_x_mm else "left"


def shape_of(candidate: Candidate) -> str:
    aspect = candidate.length_mm / max(candidate.max_diameter_mm, 1e-6)
    if aspect >= LINEAR_ASPECT:
        return "linear"
    if aspect < NODULAR_ASPECT and candidate.volume_ml <= NODULAR_MAX_ML:
        return "nodular"
    return "amorphous"


def bone_midline_x_mm(volume: CTVolume) -> float:
    """Median LPS x of bone voxels (on every second voxel): a crude midline without anatomy."""
    sample = volume.hu[::2, ::2, ::2]
    ijk = np.argwhere(sample >= BONE_HU) * 2
    if len(ijk) == 0:
        centre = (np.asarray(volume.shape) - 1) / 2.0
        return float(volume.index_to_lps(centre)[0])
    return float(np.median(volume.index_to_lps(ijk)[:, 0]))


def findings_from_candidates(
    candidates: Candidates, volume: CTVolume, series_index: int, first_id: int = 1
) -> tuple[Finding, ...]:
    """One finding per candidate, numbered from ``first_id`` in candidate order."""
    if not candidates.candidates:
        return ()
    midline_x = bone_midline_x_mm(volume)
    return tuple(
        Finding(
            id=first_id + n,
            series_index=series_index,
            category="other",
            category_basis="prior",
            centroid_lps_mm=c.centroid_lps_mm,
            bbox_lps_mm=c.bbox_lps_mm,
            volume_ml=round(c.volume_ml, 4),
            length_mm=round(c.length_mm, 2),
            max_diameter_mm=round(c.max_diameter_mm, 2),
            shape=shape_of(c),
            mean_hu=round(c.mean_hu, 1),
            max_hu=c.max_hu,
            side=side_of(c.centroid_lps_mm[0], midline_x),
            confidence=PLACEHOLDER_CONFIDENCE,
        )
        for n, c in enumerate(candidates.candidates)
    )
