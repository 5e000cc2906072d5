"""Test inputs for the hospital formats: schema-valid findings built from phantom truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from cementscan.findings import validate_findings
from cementscan.io import CTVolume

SMALL_PHANTOM = {"slice_mm": 5.0, "pixel_mm": 3.0, "fov_mm": 360.0, "noise_hu": 0.0}
NEGATIVE_SUMMARY: dict[str, Any] = {
    "treated_levels": [],
    "leak_present": False,
    "leaks": {},
    "ivc": {
        "assessable": True,
        "present": False,
        "cranial_extent_level": None,
        "caudal_extent_level": None,
        "length_mm": None,
        "extends_beyond_fov": None,
    },
    "right_heart": {"assessable": False, "present": None},
    "pce": {
        "assessable": False,
        "present": None,
        "count": 0,
        "laterality": "none",
        "predominance": "none",
        "zone_predominance": "none",
        "most_proximal": "none",
        "max_length_mm": None,
    },
}


def finding_dict(
    fid: int, category: str, labels: np.ndarray, volume: CTVolume, **extra: Any
) -> dict[str, Any]:
    """A finding whose volume is exactly its voxel count in ``labels`` times the voxel volume."""
    idx = np.argwhere(labels == fid)
    lps = volume.index_to_lps(idx.mean(axis=0)) if len(idx) else np.zeros(3)
    lo, hi = (
        (volume.index_to_lps(idx.min(axis=0)), volume.index_to_lps(idx.max(axis=0)))
        if len(idx)
        else (np.zeros(3), np.zeros(3))
    )
    base: dict[str, Any] = {
        "id": fid,
        "series_index": 0,
        "category": category,
        "category_basis": "anatomy",
        "yeom_type": None,
        "centroid_lps_mm": [float(v) for v in lps],
        "bbox_lps_mm": [
            [float(v) for v in np.minimum(lo, hi)],
            [float(v) for v in np.maximum(lo, hi)],
        ],
        "volume_ml": float(len(idx) * volume.voxel_volume_ml),
        "length_mm": 10.0 + fid,
        "max_diameter_mm": 3.0,
        "shape": "nodular",
        "mean_hu": 2000.0,
        "max_hu": 3071.0,
        "level": None,
        "level_offset": None,
        "side": "midline",
        "lung_zone": None,
        "lobe": None,
        "central": None,
        "connected_to": None,
        "canal_compromise_pct": None,
        "confidence": 0.9,
    }
    base.update(extra)
    return base


def findings_document(
    finding_list: list[dict[str, Any]], volume: CTVolume, summary: dict[str, Any]
) -> dict[str, Any]:
    doc = {
        "schema": "cementscan.findings/1",
        "software": {"name": "cementscan", "version": "0.0.test"},
        "inputs": [
            {
                "path": volume.source.path,
                "format": volume.source.format,
                "series_uid": volume.source.series_uid,
                "shape": list(volume.shape),
                "spacing_mm": list(volume.spacing_mm),
                "modality": "CT",
                "contrast_phase": "unknown",
                "coverage": ["chest", "abdomen"],
            }
        ],
        "skipped_series": [],
        "anatomy": {"levels": [], "level_anchor": "none", "level_confidence": 0.0},
        "findings": finding_list,
        "summary": summary,
        "management": {"suggestion": "Test suggestion.", "basis": [], "inputs": {}},
        "warnings": [],
        "timings_s": {},
    }
    validate_findings(doc)
    return doc
