"""Naming and measuring candidates as findings: category, side, shape (anatomy-free fallbacks for now)."""

from __future__ import annotations

import numpy as np

from cementscan.anatomy.model import Anatomy
from cementscan.cement.candidates import Candidate, Candidates
from cementscan.findings.model import Finding
from cementscan.io.volume import CTVolume

MIDLINE_HALF_WIDTH_MM = 5.0  # DESIGN.md §3: "midline" within ±5 mm of the canal centre
LINEAR_ASPECT = 3.0
NODULAR_ASPECT = 2.0
NODULAR_MAX_ML = 0.5
# Without a spinal canal (no anatomy, or a scan where none was found), dense bone marks the
# spine, which sits on the midline.
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


def canal_x_mm(anatomy: Anatomy, z_mm: float) -> float | None:
    """The spinal canal centre's x at the axial level nearest ``z_mm`` (DESIGN.md §3 midline)."""
    centreline = anatomy.canal_centerline_lps_mm
    if len(centreline) == 0:
        return None
    return float(centreline[int(np.argmin(np.abs(centreline[:, 2] - z_mm))), 0])


def nearest_level(anatomy: Anatomy, point_lps_mm: tuple[float, float, float]) -> str | None:
    """The level of the vertebral body whose centroid is nearest in z; None when levels are unknown
    or the point lies beyond the bodies found by more than half a body's height."""
    named = [v for v in anatomy.vertebrae if v.level]
    if not named:
        return None
    z = point_lps_mm[2]
    best = min(named, key=lambda v: abs(v.body_centroid_lps_mm[2] - z))
    low, high = best.z_range_mm
    margin = (high - low) / 2
    return best.level if low - margin <= z <= high + margin else None


def findings_from_candidates(
    candidates: Candidates,
    volume: CTVolume,
    series_index: int,
    first_id: int = 1,
    anatomy: Anatomy | None = None,
) -> tuple[Finding, ...]:
    """One finding per candidate, numbered from ``first_id`` in candidate order.

    Side is taken against the spinal canal at the finding's height when the anatomy has it,
    else against the bone midline (a prior); level from the nearest vertebral body.
    """
    if not candidates.candidates:
        return ()
    fallback: list[float] = []  # the bone midline, computed only if some finding needs it

    def midline_x(z_mm: float) -> float:
        canal = None if anatomy is None else canal_x_mm(anatomy, z_mm)
        if canal is not None:
            return canal
        if not fallback:
            fallback.append(bone_midline_x_mm(volume))
        return fallback[0]

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
            side=side_of(c.centroid_lps_mm[0], midline_x(c.centroid_lps_mm[2])),
            confidence=PLACEHOLDER_CONFIDENCE,
            level=None if anatomy is None else nearest_level(anatomy, c.centroid_lps_mm),
        )
        for n, c in enumerate(candidates.candidates)
    )
