"""Where a piece of cement lies relative to the spine: side, midline, level and shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cementscan.anatomy.model import Anatomy, Vertebra
from cementscan.cement.candidates import Candidate
from cementscan.io.volume import CTVolume

MIDLINE_HALF_WIDTH_MM = 5.0  # DESIGN.md §3: "midline" within ±5 mm of the canal centre
LINEAR_ASPECT = 3.0  # length / equivalent diameter of a tube-like piece
NODULAR_ASPECT = 2.0
NODULAR_MAX_ML = 0.5
# Without a spinal canal (no anatomy, or a scan where none was found), dense bone marks the
# spine, ribs and pelvis, which are symmetric about the midline: their median x is the midline.
BONE_HU = 200
BONE_SAMPLE_STEP = 4  # in-plane subsampling of the bone column (a 512 matrix -> 128)
BONE_SLAB_MM = 40.0  # z window over which the bone-column median is taken
MIN_BONE_SAMPLES = 30
# Levels are reported only when the anatomy is reasonably sure of them (DESIGN.md §5: "a level
# into null" rather than a wrong level); anchors that disagree give 0.4.
MIN_LEVEL_CONFIDENCE = 0.5


def side_of(x_mm: float, midline_x_mm: float) -> str:
    """The patient's side of a point: LPS x grows toward the patient's left."""
    if abs(x_mm - midline_x_mm) <= MIDLINE_HALF_WIDTH_MM:
        return "midline"
    return "right" if x_mm < midline_x_mm else "left"


def shape_name(length_mm: float, volume_ml: float) -> str:
    """linear / nodular / amorphous from the length and the mean cross-section along it.

    The equivalent diameter (that of a cylinder of the piece's volume and length) is robust to
    the staircase of coarse slices, unlike the second principal extent.
    """
    diameter_mm = equivalent_diameter_mm(length_mm, volume_ml)
    aspect = length_mm / max(diameter_mm, 1e-6)
    if aspect >= LINEAR_ASPECT:
        return "linear"
    if aspect < NODULAR_ASPECT and volume_ml <= NODULAR_MAX_ML:
        return "nodular"
    return "amorphous"


def equivalent_diameter_mm(length_mm: float, volume_ml: float) -> float:
    area_mm2 = volume_ml * 1000.0 / max(length_mm, 1e-6)
    return float(2.0 * np.sqrt(area_mm2 / np.pi))


def shape_of(candidate: Candidate) -> str:
    return shape_name(candidate.length_mm, candidate.volume_ml)


@dataclass(frozen=True, eq=False)
class Midline:
    """The midline's x (and, with a canal, its y) as a function of LPS z.

    From the anatomy's spinal canal centreline when there is one (DESIGN.md §3), else from the
    CT's own bone column, so that sides never depend on anatomy having worked.
    """

    z_mm: np.ndarray  # ascending
    x_mm: np.ndarray
    y_mm: np.ndarray | None  # canal centre's y; None when only the bone column is known
    source: str  # "canal" | "bone"

    def x_at(self, z_mm: float | np.ndarray) -> np.ndarray:
        return np.interp(z_mm, self.z_mm, self.x_mm)

    def y_at(self, z_mm: float | np.ndarray) -> np.ndarray | None:
        return None if self.y_mm is None else np.interp(z_mm, self.z_mm, self.y_mm)


def canal_midline(anatomy: Anatomy | None) -> Midline | None:
    """The spinal canal's centreline as a Midline, or None when the anatomy has none."""
    if anatomy is None or len(anatomy.canal_centerline_lps_mm) == 0:
        return None
    points = np.asarray(anatomy.canal_centerline_lps_mm, float)
    order = np.argsort(points[:, 2])
    points = points[order]
    # A running median over ~2 vertebrae damps single-slice jumps of the traced centreline.
    x = _running_median(points[:, 2], points[:, 0], BONE_SLAB_MM)
    return Midline(points[:, 2], x, points[:, 1].copy(), "canal")


def bone_midline(volume: CTVolume) -> Midline:
    """Per-height median x of the CT's bone voxels (spine, ribs, pelvis are symmetric)."""
    step = BONE_SAMPLE_STEP
    sample = volume.hu[::step, ::step, :]
    ijk = np.argwhere(sample >= BONE_HU).astype(float)
    if len(ijk) < MIN_BONE_SAMPLES:
        centre = volume.index_to_lps((np.asarray(volume.shape) - 1) / 2.0)
        return Midline(np.array([centre[2]]), np.array([centre[0]]), None, "bone")
    ijk[:, :2] *= step
    lps = volume.index_to_lps(ijk)
    z_all = lps[:, 2]
    bins = np.round(z_all / (BONE_SLAB_MM / 4)).astype(int)
    centres_z, centres_x = [], []
    for b in np.unique(bins):
        # Each slab of a quarter window: median of its window's bone x.
        window = np.abs(bins - b) <= 2
        if int(window.sum()) >= MIN_BONE_SAMPLES:
            centres_z.append(float(b * BONE_SLAB_MM / 4))
            centres_x.append(float(np.median(lps[window, 0])))
    if not centres_z:
        return Midline(np.array([float(np.median(z_all))]), np.array([float(np.median(lps[:, 0]))]),
                       None, "bone")  # fmt: skip
    return Midline(np.asarray(centres_z), np.asarray(centres_x), None, "bone")


def _running_median(z: np.ndarray, values: np.ndarray, window_mm: float) -> np.ndarray:
    out = np.empty_like(values)
    for n, zc in enumerate(z):
        out[n] = np.median(values[np.abs(z - zc) <= window_mm / 2])
    return out


def canal_x_mm(anatomy: Anatomy, z_mm: float) -> float | None:
    """The spinal canal centre's x at the axial level nearest ``z_mm`` (DESIGN.md §3 midline)."""
    centreline = anatomy.canal_centerline_lps_mm
    if len(centreline) == 0:
        return None
    return float(centreline[int(np.argmin(np.abs(centreline[:, 2] - z_mm))), 0])


def levels_known(anatomy: Anatomy | None) -> bool:
    return (
        anatomy is not None
        and anatomy.level_anchor != "none"
        and anatomy.level_confidence >= MIN_LEVEL_CONFIDENCE
        and any(v.level for v in anatomy.vertebrae)
    )


def nearest_vertebra(vertebrae: tuple[Vertebra, ...], z_mm: float) -> int | None:
    """Index of the body whose z-span holds ``z_mm`` (else the one nearest in z), or None when
    the point lies beyond the bodies found by more than half a body's height."""
    if not vertebrae:
        return None

    def distance(n: int) -> tuple[float, float]:
        low, high = vertebrae[n].z_range_mm
        gap = max(low - z_mm, z_mm - high, 0.0)
        return gap, abs(vertebrae[n].body_centroid_lps_mm[2] - z_mm)

    best = min(range(len(vertebrae)), key=distance)
    low, high = vertebrae[best].z_range_mm
    margin = (high - low) / 2
    return best if low - margin <= z_mm <= high + margin else None


def nearest_level(anatomy: Anatomy, point_lps_mm: tuple[float, float, float]) -> str | None:
    """The level of the vertebral body nearest in z; None when levels are unknown or the point
    lies beyond the bodies found by more than half a body's height."""
    if not levels_known(anatomy):
        return None
    index = nearest_vertebra(anatomy.vertebrae, point_lps_mm[2])
    return None if index is None else anatomy.vertebrae[index].level
