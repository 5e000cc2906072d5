"""The Anatomy the anatomy stage hands on: masks on the working grid plus landmarks, in LPS mm."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cementscan.anatomy.grid import WorkGrid


@dataclass(frozen=True)
class Vertebra:
    """One vertebral body found in the scan, cranial to caudal."""

    level: str | None  # "L3"; None when the numbering is not known
    body_centroid_lps_mm: tuple[float, float, float]
    z_range_mm: tuple[float, float]  # (caudal, cranial) extent of the body in LPS z
    has_ribs: bool | None = None


@dataclass(frozen=True)
class LungInfo:
    """One lung: its volume, cranio-caudal extent (for zones) and hilum (for central/peripheral)."""

    side: str  # "right" | "left"
    volume_ml: float
    z_range_mm: tuple[float, float]  # (caudal, cranial)
    hilum_lps_mm: tuple[float, float, float] | None
    apex_covered: bool  # the scan reaches above the apex
    base_covered: bool  # the scan reaches below the base

    @property
    def fully_covered(self) -> bool:
        return self.apex_covered and self.base_covered

    def zone_of(self, z_mm: float) -> str | None:
        """Upper/middle/lower third of the lung's height; None unless the whole lung is in the scan."""
        if not self.fully_covered:
            return None
        low, high = self.z_range_mm
        fraction = (z_mm - low) / max(high - low, 1e-6)
        return "lower" if fraction < 1 / 3 else "middle" if fraction < 2 / 3 else "upper"


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Masks (boolean, on ``grid``'s voxels, indexed [x, y, z]) and landmarks of one CT series.

    Mask names are those of anatomy_labels.json: "body", "bone", "vertebral_body_L3",
    "disc_L3_L4", "spinal_canal", "lung_right", "lung_left", "pulmonary_vessels", "ivc",
    "azygos", "svc", "heart", "right_heart", "aorta", ... A structure that was not found
    has no mask. Positions in LPS mm; ``grid.to_lps`` maps mask indices to LPS.
    """

    grid: WorkGrid
    masks: dict[str, np.ndarray]
    vertebrae: tuple[Vertebra, ...] = ()
    level_anchor: str = "none"  # sacrum | last_rib | first_rib | imported | none
    level_confidence: float = 0.0
    canal_centerline_lps_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    ivc_centerline_lps_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    lungs: dict[str, LungInfo] = field(default_factory=dict)
    contrast_phase: str = "unknown"  # native | arterial | portal_venous | unknown
    dense_contrast_veins: tuple[str, ...] = ()  # veins filled with undiluted contrast
    coverage: tuple[str, ...] = ()
    source: str = "classical"  # classical | imported
    warnings: tuple[str, ...] = ()

    def mask_at(self, name: str, lps_mm: np.ndarray) -> np.ndarray:
        """Whether each LPS point (n, 3) falls in mask ``name`` (False outside the grid or mask)."""
        points = np.atleast_2d(np.asarray(lps_mm, dtype=float))
        mask = self.masks.get(name)
        if mask is None:
            return np.zeros(len(points), bool)
        index = np.rint(self.grid.to_index(points)).astype(int)
        inside = np.all((index >= 0) & (index < np.asarray(mask.shape)), axis=1)
        result = np.zeros(len(points), bool)
        result[inside] = mask[tuple(index[inside].T)]
        return result
