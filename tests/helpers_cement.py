"""Judge inputs for unit tests: a Candidate with the features the cement stage measures, and a
native scan's calibration."""

from __future__ import annotations

from cementscan.cement.calibration import Calibration
from cementscan.cement.candidates import Candidate

# An unenhanced scan's calibration (a native phantom's cortex and lung vessels).
NATIVE = Calibration(
    cortex_hu=800.0,
    seed_hu=1100.0,
    grow_hu=840.0,
    lung_vessel_hu=135.0,
    lung_seed_hu=385.0,
    lung_grow_hu=272.0,
    soft_seed_hu=600.0,
)


def candidate_features(**values: float) -> dict[str, float]:
    """The measured features with neutral defaults (no metal, no core, not in lung or a pool)."""
    base = dict.fromkeys(
        (
            "saturated",
            "beyond_scale",
            "near_metal",
            "metal_ml",
            "off_metal_ml",
            "core_ml",
            "seed_ml",
            "bone_shell",
            "vessel_frac",
            "in_pool",
            "projected_hu",
            "projected_diameter_mm",
            "depth_mm",
            "at_scan_end",
            "dense_outside_lung_ml",
        ),
        0.0,
    )
    base.update(asymmetry=1.0, fill=0.8, in_lung=0.0, streak=0.0)
    base.update(values)
    return base


def judged_candidate(volume_ml: float, length_mm: float, **features: float) -> Candidate:
    """A candidate of ``volume_ml`` and ``length_mm`` whose HU is its ``p90_hu`` feature."""
    return Candidate(
        label=1,
        voxel_count=int(features.get("voxels", 10)),
        volume_ml=volume_ml,
        centroid_lps_mm=(0.0, 0.0, 0.0),
        bbox_lps_mm=((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        length_mm=length_mm,
        max_diameter_mm=length_mm,
        mean_hu=float(features["p90_hu"]),
        max_hu=float(features["p90_hu"]),
        features=candidate_features(**features),
    )
