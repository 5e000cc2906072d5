"""Naming and counting pulmonary emboli: one embolus is one finding across mask edges and
fragments, and central emboli in the great vessels above a heart mask are pulmonary_artery."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cementscan.anatomy.grid import WorkGrid
from cementscan.anatomy.model import Anatomy, LungInfo
from cementscan.cement.candidates import Candidate, Candidates
from cementscan.classify import classify_candidates
from cementscan.findings.model import Finding
from cementscan.io.volume import CTVolume, SourceInfo

SPACING_MM = 2.0
SHAPE = (80, 60, 50)  # x -80..78, y -60..58, z 0..98 mm
ORIGIN = np.array([-80.0, -60.0, 0.0])
HILA = {"right": (-40.0, 0.0, 60.0), "left": (40.0, 0.0, 56.0)}


def _index(x_mm: float, y_mm: float, z_mm: float) -> tuple[int, int, int]:
    i, j, k = np.rint((np.array([x_mm, y_mm, z_mm]) - ORIGIN) / SPACING_MM).astype(int)
    return int(i), int(j), int(k)


def _mediastinum() -> tuple[np.ndarray, Anatomy]:
    """A chest crop without a spine: two lungs with hila at z 56-60 mm and a heart mask that,
    as in a CTPA crop, reaches up past the hila along the great vessels."""
    hu = np.full(SHAPE, 40, np.int16)
    masks = {name: np.zeros(SHAPE, bool) for name in ("lung_right", "lung_left", "heart")}
    masks["lung_right"][: _index(-30, 0, 0)[0]] = True
    masks["lung_left"][_index(30, 0, 0)[0] + 1 :] = True
    hu[masks["lung_right"] | masks["lung_left"]] = -850
    (i0, j0, k0), (i1, j1, k1) = _index(-20, -40, 10), _index(20, 10, 80)
    masks["heart"][i0 : i1 + 1, j0 : j1 + 1, k0 : k1 + 1] = True
    masks["right_heart"] = masks["heart"].copy()
    masks["right_heart"][_index(0, 0, 0)[0] :] = False
    lungs = {
        side: LungInfo(side, 1500.0, (0.0, 98.0), HILA[side], False, False)
        for side in ("right", "left")
    }
    grid = WorkGrid(hu, SPACING_MM, ORIGIN)
    anatomy = Anatomy(grid=grid, masks=masks, lungs=lungs, coverage=("chest",))
    return hu, anatomy


def _tube(hu: np.ndarray, start_mm: tuple[float, ...], stop_mm: tuple[float, ...]) -> None:
    """Cement (2000 HU) one voxel wide along the straight line between two points."""
    a, b = np.array(_index(*start_mm)), np.array(_index(*stop_mm))
    steps = int(np.abs(b - a).max())
    for t in np.linspace(0.0, 1.0, steps + 1):
        hu[tuple(np.rint(a + t * (b - a)).astype(int))] = 2000


def _classify(hu: np.ndarray, anatomy: Anatomy) -> tuple[Finding, ...]:
    volume = CTVolume(hu, (SPACING_MM,) * 3, tuple(ORIGIN), np.eye(3), SourceInfo("x", "nifti"))
    labels, _ = ndimage.label(hu >= 1000, structure=np.ones((3, 3, 3), bool))
    candidates = []
    for n, box in enumerate(ndimage.find_objects(labels), start=1):
        assert box is not None
        lps = volume.index_to_lps(np.argwhere(labels[box] == n) + [s.start for s in box])
        centred = lps - lps.mean(axis=0)
        _, _, axes = np.linalg.svd(centred, full_matrices=False)
        spans = np.ptp(centred @ axes.T, axis=0) + SPACING_MM
        low, high, centre = lps.min(axis=0), lps.max(axis=0), lps.mean(axis=0)
        candidates.append(
            Candidate(label=n, voxel_count=len(lps), volume_ml=len(lps) * volume.voxel_volume_ml,
                      centroid_lps_mm=tuple(float(v) for v in centre),  # type: ignore[arg-type]
                      bbox_lps_mm=(tuple(float(v) for v in low), tuple(float(v) for v in high)),  # type: ignore[arg-type]
                      length_mm=float(spans[0]),
                      max_diameter_mm=float(spans[1]) if len(spans) > 1 else SPACING_MM,
                      mean_hu=2000.0, max_hu=2000.0)
        )  # fmt: skip
    found, _ = classify_candidates(
        Candidates(labels.astype(np.int32), tuple(candidates)), volume, anatomy, 0, 1
    )
    return found


def test_embolus_crossing_a_lung_mask_edge_is_one_central_finding() -> None:
    hu, anatomy = _mediastinum()
    # From the right hilum medially out of the lung mask into the mediastinum (no mask there).
    _tube(hu, (-50, 0, 60), (-22, 4, 62))
    found = _classify(hu, anatomy)
    assert [(f.category, f.side, f.central) for f in found] == [("pulmonary_artery", "right", True)]


def test_fragments_one_voxel_apart_are_one_embolus_and_distant_ones_two() -> None:
    hu, anatomy = _mediastinum()
    _tube(hu, (50, 20, 30), (50, 20, 42))
    _tube(hu, (50, 20, 46), (50, 20, 56))  # one voxel (z 44) lost to partial volume
    _tube(hu, (64, -30, 30), (64, -30, 40))
    _tube(hu, (64, -30, 52), (64, -30, 60))  # 10 mm further along: another embolus
    found = _classify(hu, anatomy)
    assert all(f.category == "pulmonary_artery" for f in found)
    assert sorted(round(f.length_mm) for f in found) == [10, 12, 28]


def test_central_embolus_above_the_heart_base_is_pulmonary_not_right_heart() -> None:
    hu, anatomy = _mediastinum()
    # A linear focus running right-posterior in the heart mask at the hila's level (the right
    # pulmonary artery where the mask reaches up along the great vessels) ...
    _tube(hu, (-4, -20, 64), (-18, -6, 64))
    # ... and the same cement low in the heart: intracardiac.
    _tube(hu, (-4, -20, 24), (-18, -6, 24))
    found = sorted(_classify(hu, anatomy), key=lambda f: -f.centroid_lps_mm[2])
    assert [(f.category, f.central) for f in found] == [
        ("pulmonary_artery", True),
        ("right_heart", None),
    ]
    assert found[0].side == "right"
