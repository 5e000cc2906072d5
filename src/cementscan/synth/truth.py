"""Ground truth of a phantom in the findings vocabulary (DESIGN.md §4): objects, confounders, summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cementscan.synth.shapes import Shape, sample_inside

TRUTH_SCHEMA = "cementscan.truth/1"
# Categories counted in summary.leaks: every extra-osseous site except the heart and lungs,
# which have their own summary blocks.
LEAK_SUMMARY_CATEGORIES = (
    "disc", "epidural", "foraminal", "paravertebral_soft_tissue", "paravertebral_vein",
    "azygos", "ivc", "svc", "other",
)  # fmt: skip


@dataclass
class TruthObject:
    """One piece of cement: its shape and its expected finding."""

    id: int
    category: str
    shape_kind: str  # linear / nodular / amorphous / cast
    shape: Shape
    hu: float
    side: str
    level: str | None = None
    yeom_type: str | None = None
    lung_zone: str | None = None
    central: bool | None = None
    connected_to: int | None = None
    note: str | None = None
    length_mm: float | None = None  # analytic length (tubes); else measured from the shape
    # Filled by measure():
    centroid_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    volume_ml: float = 0.0
    series_indices: list[int] = field(default_factory=list)
    primary_series: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def measure(self, step_mm: float = 0.4) -> None:
        """Volume, centroid and (if not analytic) length from a fine sampling of the shape."""
        pts, ml_per_point = sample_inside(self.shape, step_mm)
        if len(pts) == 0:
            raise ValueError(f"truth object {self.id} ({self.category}) has no volume")
        self.volume_ml = float(len(pts) * ml_per_point)
        self.centroid_lps_mm = tuple(float(c) for c in pts.mean(axis=0))  # type: ignore[assignment]
        if self.length_mm is None:
            self.length_mm = principal_extent_mm(pts) + step_mm

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "series_index": self.primary_series,
            "series_indices": list(self.series_indices),
            "category": self.category,
            "yeom_type": self.yeom_type,
            "shape": self.shape_kind,
            "centroid_lps_mm": [round(c, 2) for c in self.centroid_lps_mm],
            "volume_ml": round(self.volume_ml, 4),
            "length_mm": round(float(self.length_mm or 0.0), 2),
            "hu": round(self.hu, 1),
            "level": self.level,
            "side": self.side,
            "lung_zone": self.lung_zone,
            "central": self.central,
            "connected_to": self.connected_to,
            "note": self.note,
            **self.extra,
        }


@dataclass
class Confounder:
    """A cement look-alike (calcification, metal, dense contrast): must not be reported."""

    id: int
    kind: str
    shape: Shape
    hu: float
    centroid_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    series_indices: list[int] = field(default_factory=list)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.shape.bbox()
        return {
            "id": self.id,
            "kind": self.kind,
            "centroid_lps_mm": [round(float(c), 2) for c in self.centroid_lps_mm],
            "bbox_lps_mm": [[round(float(c), 1) for c in lo], [round(float(c), 1) for c in hi]],
            "hu": round(self.hu, 1),
            "series_indices": list(self.series_indices),
            "note": self.note,
        }


def principal_extent_mm(pts: np.ndarray) -> float:
    """Extent of a point cloud along its first principal axis."""
    if len(pts) < 2:
        return 0.0
    centred = pts - pts.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(pts) // 20000)], full_matrices=False)
    proj = centred @ vt[0]
    return float(proj.max() - proj.min())


def side_of(x_mm: float, canal_x_mm: float = 0.0) -> str:
    """DESIGN.md §3: right at smaller x, midline within ±5 mm of the canal centre."""
    dx = x_mm - canal_x_mm
    return "midline" if abs(dx) <= 5.0 else ("right" if dx < 0 else "left")


def _predominance(a: int, b: int, names: tuple[str, str]) -> str:
    if a == 0 and b == 0:
        return "none"
    if a >= 2 * b:
        return names[0]
    if b >= 2 * a:
        return names[1]
    return "balanced"


def summarize(objects: list[TruthObject], coverage: set[str], level_order: list[str],
              fov_z: list[tuple[float, float]], ivc_z_of_level: dict[str, tuple[float, float]]
              ) -> dict[str, Any]:  # fmt: skip
    """The per-study summary the analysis should produce, in DESIGN.md §4's shape."""
    by_cat: dict[str, list[TruthObject]] = {}
    for obj in objects:
        by_cat.setdefault(obj.category, []).append(obj)
    treated: dict[str, float] = {}
    for obj in by_cat.get("intravertebral", []):
        treated[str(obj.level)] = treated.get(str(obj.level), 0.0) + obj.volume_ml
    treated_levels = [
        {"level": lv, "cement_volume_ml": round(treated[lv], 3)}
        for lv in sorted(treated, key=level_order.index)
    ]
    leaks = {c: len(by_cat[c]) for c in LEAK_SUMMARY_CATEGORIES if c in by_cat}
    abdomen = bool(coverage & {"abdomen", "lumbar_spine"})
    chest = "chest" in coverage
    ivc_objs = by_cat.get("ivc", [])
    ivc: dict[str, Any] = {"assessable": abdomen, "present": (bool(ivc_objs) if abdomen else None)}
    if ivc_objs:
        lo = min(float(o.extra["z_range_mm"][0]) for o in ivc_objs)
        hi = max(float(o.extra["z_range_mm"][1]) for o in ivc_objs)
        ivc.update(
            cranial_extent_level=_level_at(hi, ivc_z_of_level, level_order),
            caudal_extent_level=_level_at(lo, ivc_z_of_level, level_order),
            length_mm=round(sum(float(o.length_mm or 0.0) for o in ivc_objs), 1),
            extends_beyond_fov=not any(z0 <= hi + 1e-6 and hi < z1 - 1.0 for z0, z1 in fov_z),
        )
    rh = by_cat.get("right_heart", [])
    pce_objs = by_cat.get("pulmonary_artery", [])
    n_right = sum(o.side == "right" for o in pce_objs)
    n_left = sum(o.side == "left" for o in pce_objs)
    zones = Counter(o.lung_zone for o in pce_objs)
    zone_pred = "none"
    if any(o.lung_zone for o in pce_objs):
        top, top_n = max(
            ((z, zones.get(z, 0)) for z in ("lower", "middle", "upper")), key=lambda t: t[1]
        )
        others = [zones.get(z, 0) for z in ("lower", "middle", "upper") if z != top]
        zone_pred = top if all(top_n >= 2 * o for o in others) else "diffuse"
    pce: dict[str, Any] = {
        "assessable": chest,
        "present": (bool(pce_objs) if chest else None),
        "count": len(pce_objs),
        "laterality": (
            "bilateral"
            if n_right and n_left
            else "right"
            if n_right
            else "left"
            if n_left
            else "none"
        ),
        "predominance": _predominance(n_right, n_left, ("right", "left")),
        "zone_predominance": zone_pred,
        "most_proximal": (
            "central" if any(o.central for o in pce_objs) else "peripheral" if pce_objs else "none"
        ),
        "max_length_mm": round(max((float(o.length_mm or 0) for o in pce_objs), default=0.0), 1),
    }
    return {
        "treated_levels": treated_levels,
        "leak_present": bool(leaks) or bool(rh) or bool(pce_objs),
        "leaks": leaks,
        "ivc": ivc,
        "right_heart": {"assessable": chest, "present": (bool(rh) if chest else None)},
        "pce": pce,
    }


def _level_at(z_mm: float, z_of_level: dict[str, tuple[float, float]], order: list[str]) -> str:
    """The level whose body span (down to the next disc) contains ``z_mm``; nearest otherwise."""
    best, best_d = order[0], float("inf")
    for name in order:
        if name not in z_of_level:
            continue
        lo, hi = z_of_level[name]
        d = max(lo - z_mm, z_mm - hi, 0.0)
        if d < best_d:
            best, best_d = name, d
    return best
