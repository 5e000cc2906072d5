"""Cement inside an opacified vessel is judged against the lumen, not taken for bone or contrast.

Small synthetic CTs (1.5 mm voxels): a body of soft tissue with a vertebra (cortex and
trabecular bone, for the scan's own cortex level) and a contrast-filled vessel at a CTPA's
400-550 HU. A cement focus of known size inside the lumen is found; the same vessel without
cement, a focus in textured bone of the lumen's mean density and a focus amid mixing contrast
denser than the scan's blood are not taken for intraluminal cement (issue #4).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cementscan.cement import find_cement
from cementscan.io.volume import CTVolume, SourceInfo

SPACING_MM = (1.5, 1.5, 1.5)
SHAPE = (90, 90, 60)
VESSEL_CENTRE = (30, 45)  # (i, j) of the vessel running along k
VESSEL_RADIUS_MM = 9.0
BONE_CENTRE = (62, 45)
FOCUS_HU = 1800.0  # cement: denser than this scan's cortex (900)


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    return i * SPACING_MM[0], j * SPACING_MM[1], k * SPACING_MM[2]


def _volume(lumen_hu: float, seed: int = 0) -> np.ndarray:
    """HU (float) of the body, the vertebra and the vessel."""
    rng = np.random.default_rng(seed)
    x, y, _ = _grid()
    hu = np.full(SHAPE, -1000.0)
    body = ((x - 67.0) / 62.0) ** 2 + ((y - 67.0) / 60.0) ** 2 <= 1.0
    hu[body] = 40.0
    r_bone = np.hypot(x - BONE_CENTRE[0] * SPACING_MM[0], y - BONE_CENTRE[1] * SPACING_MM[1])
    hu[r_bone <= 16.0] = 900.0  # cortex
    # Trabecular bone: textured (trabeculae and marrow), mean near a CTPA lumen's level.
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, SHAPE), 0.8)
    trabecular = r_bone <= 14.0
    hu[trabecular] = 420.0 + 260.0 * texture[trabecular] / texture.std()
    r_vessel = np.hypot(x - VESSEL_CENTRE[0] * SPACING_MM[0], y - VESSEL_CENTRE[1] * SPACING_MM[1])
    hu[r_vessel <= VESSEL_RADIUS_MM] = lumen_hu
    return hu


def _rod(centre_ij: tuple[int, int], length_mm: float, width_mm: float) -> np.ndarray:
    """Coverage (0..1) of a rod along k, partial-volumed by a 1-voxel blur."""
    x, y, z = _grid()
    c = np.array(centre_ij) * np.array(SPACING_MM[:2])
    z0 = SHAPE[2] * SPACING_MM[2] / 2.0
    inside = (np.hypot(x - c[0], y - c[1]) <= width_mm / 2.0) & (np.abs(z - z0) <= length_mm / 2.0)
    return np.clip(ndimage.gaussian_filter(inside.astype(float), 0.7), 0.0, 1.0)


def _ct(hu: np.ndarray, noise_hu: float = 12.0, seed: int = 1) -> CTVolume:
    rng = np.random.default_rng(seed)
    noisy = hu + rng.normal(0.0, noise_hu, hu.shape)
    return CTVolume(
        np.clip(np.rint(noisy), -1024, 3071).astype(np.int16),
        SPACING_MM,
        (0.0, 0.0, 0.0),
        np.eye(3),
        SourceInfo("synthetic", "nifti"),
    )


def _cement_in(hu: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    return (1.0 - coverage) * hu + coverage * FOCUS_HU


@pytest.mark.parametrize(("lumen_hu", "length_mm"), [(450.0, 15.0), (550.0, 8.0)])
def test_cement_in_an_opacified_lumen_is_found(lumen_hu: float, length_mm: float) -> None:
    hu = _volume(lumen_hu)
    rod = _rod(VESSEL_CENTRE, length_mm, 4.0)
    result = find_cement(_ct(_cement_in(hu, rod)))
    truth = rod >= 0.5
    hits = [c for c in result.candidates if (result.labels[truth] == c.label).any()]
    assert len(hits) == 1, [(c.kind, c.volume_ml) for c in result.candidates]
    found = hits[0]
    assert found.kind == "intraluminal"
    assert found.confidence >= 0.5
    # Judged against its lumen: the ring around it reads the lumen's level.
    assert abs(found.features["lumen_hu"] - lumen_hu) < 60.0
    # Measured as the rod, not as the lumen around it.
    assert 0.5 * truth.sum() <= found.voxel_count <= 2.5 * truth.sum()
    assert result.calibration is not None and result.calibration.blood_hu is not None
    assert abs(result.calibration.blood_hu - lumen_hu) < 60.0
    assert [c for c in result.candidates if c is not found] == []


def test_opacified_vessel_without_cement_gives_nothing() -> None:
    hu = _volume(550.0)
    result = find_cement(_ct(hu))
    assert [(c.kind, c.volume_ml) for c in result.candidates] == []


def test_dense_focus_in_textured_bone_is_not_intraluminal() -> None:
    # Trabecular bone with the lumen's mean density is not a homogeneous pool: a dense focus
    # there (a bone island) is judged as an object in bone, not against a lumen.
    hu = _volume(450.0)
    rod = _rod(BONE_CENTRE, 8.0, 4.0)
    result = find_cement(_ct(_cement_in(hu, rod)))
    truth = rod >= 0.5
    hits = [c for c in result.candidates if (result.labels[truth] == c.label).any()]
    assert all(c.kind != "intraluminal" for c in hits)
    judged = [c for c in (*result.candidates, *result.rejected) if c.kind == "intraluminal"]
    assert judged == []


def test_focus_in_mixing_contrast_denser_than_blood_is_not_intraluminal() -> None:
    # Undiluted contrast streaming through a vein: the blood around the dense column is far
    # denser than this scan's opacified blood (the artery at 450 HU) and uneven.
    hu = _volume(450.0)
    x, y, _ = _grid()
    vein_centre = (30, 70)
    r = np.hypot(x - vein_centre[0] * SPACING_MM[0], y - vein_centre[1] * SPACING_MM[1])
    swirl = 700.0 + 500.0 * np.cos(x / 3.0) * np.sin(y / 4.0)
    vein = r <= 8.0
    hu[vein] = swirl[vein]
    rod = _rod(vein_centre, 10.0, 4.0)
    result = find_cement(_ct(_cement_in(hu, rod)))
    assert [c for c in result.candidates if c.kind == "intraluminal"] == []
