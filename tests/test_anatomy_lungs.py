"""Lungs, pulmonary vessels, hila and central/peripheral on the shared real CTs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cementscan.anatomy.body import body_mask
from cementscan.anatomy.grid import WorkGrid, make_work_grid
from cementscan.anatomy.lungs import LungResult, find_lungs, is_central, lung_labels_native
from cementscan.anatomy.model import LungInfo
from cementscan.io import load_volume
from cementscan.io.volume import CTVolume
from cementscan.io.write import to_sitk

RIGHT_LOBES = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
LEFT_LOBES = ("lung_upper_lobe_left", "lung_lower_lobe_left")


@dataclass
class Case:
    volume: CTVolume
    grid: WorkGrid
    result: LungResult


def _case(path: Path) -> Case:
    volume = load_volume(path)
    grid = make_work_grid(volume)
    return Case(volume, grid, find_lungs(grid, body_mask(grid), volume))


def native_labels(path: Path, volume: CTVolume) -> np.ndarray:
    """A label file resampled (nearest) onto the CT's own [i, j, k] grid, in physical space."""
    image = sitk.ReadImage(str(path))
    reference = to_sitk(np.zeros(volume.shape, np.uint8), volume)
    out = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID()
    )
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def lobe_masks(folder: Path, volume: CTVolume) -> tuple[np.ndarray, np.ndarray]:
    names = {v: int(k) for k, v in json.loads((folder / "labels.json").read_text()).items()}
    labels = native_labels(folder / "labels.nii.gz", volume)
    right = np.isin(labels, [names[n] for n in RIGHT_LOBES])
    left = np.isin(labels, [names[n] for n in LEFT_LOBES])
    return right, left


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / max(int(a.sum()) + int(b.sum()), 1))


@pytest.fixture(scope="module")
def chest(shared_data: Path) -> Case:
    return _case(shared_data / "chest-cta" / "ct.nii.gz")


@pytest.fixture(scope="module")
def abdomen(shared_data: Path) -> Case:
    return _case(shared_data / "abdomen-native-3mm" / "ct.nii.gz")


def test_chest_lungs_match_lobe_labels_on_native_grid(chest: Case, shared_data: Path) -> None:
    right, left = lobe_masks(shared_data / "chest-cta", chest.volume)
    found = lung_labels_native(chest.result, chest.grid, chest.volume)
    dice_right, dice_left = dice(found == 1, right), dice(found == 2, left)
    print(f"chest-cta lung Dice: right {dice_right:.4f}, left {dice_left:.4f}")
    assert dice_right >= 0.95
    assert dice_left >= 0.95


def test_chest_sides_by_physical_x(chest: Case) -> None:
    masks = chest.result.masks
    right_x = chest.grid.to_lps(np.argwhere(masks["lung_right"]).mean(axis=0))[0]
    left_x = chest.grid.to_lps(np.argwhere(masks["lung_left"]).mean(axis=0))[0]
    assert right_x < left_x - 100  # LPS: the patient's right lung lies at smaller x
    assert not np.any(masks["lung_right"] & masks["lung_left"])


def test_chest_lung_info_and_zones(chest: Case) -> None:
    assert set(chest.result.lungs) == {"right", "left"}
    for info in chest.result.lungs.values():
        assert info.fully_covered
        assert 1000 < info.volume_ml < 3500
        low, high = info.z_range_mm
        zones = [info.zone_of(low + f * (high - low)) for f in (0.1, 0.5, 0.9)]
        assert zones == ["lower", "middle", "upper"]
        assert info.hilum_lps_mm is not None
        # the hilum lies in the middle of the lung's height and medial to its centre
        assert low + 0.3 * (high - low) < info.hilum_lps_mm[2] < low + 0.8 * (high - low)


def test_chest_airways_are_outside_the_lungs(chest: Case) -> None:
    masks = chest.result.masks
    airways = masks["airways"]
    assert airways.sum() * chest.grid.spacing_mm**3 / 1000 > 5  # trachea at least
    assert not np.any(airways & (masks["lung_right"] | masks["lung_left"]))


def test_chest_pulmonary_vessels_inside_lungs_and_dense(chest: Case) -> None:
    masks = chest.result.masks
    lungs = masks["lung_right"] | masks["lung_left"]
    vessels = masks["pulmonary_vessels"]
    assert vessels.sum() * chest.grid.spacing_mm**3 / 1000 > 20
    assert not np.any(vessels & ~lungs)
    hu = chest.grid.hu
    parenchyma = lungs & ~vessels
    assert np.median(hu[vessels]) > np.median(hu[parenchyma]) + 500


def test_abdomen_lung_bases(abdomen: Case, shared_data: Path) -> None:
    """abdomen-native-3mm: small labelled lung bases at the top; found, on the right sides."""
    right, left = lobe_masks(shared_data / "abdomen-native-3mm", abdomen.volume)
    assert right.any() and left.any()
    found = lung_labels_native(abdomen.result, abdomen.grid, abdomen.volume)
    dice_right, dice_left = dice(found == 1, right), dice(found == 2, left)
    print(f"abdomen-native-3mm lung-base Dice: right {dice_right:.4f}, left {dice_left:.4f}")
    assert dice_right >= 0.8
    assert dice_left >= 0.8
    for info in abdomen.result.lungs.values():
        assert not info.apex_covered and info.base_covered
        assert info.zone_of(info.z_range_mm[0]) is None  # zones need the whole lung
        assert info.hilum_lps_mm is None
    # colon gas (over 200 ml there) is not lung
    assert sum(i.volume_ml for i in abdomen.result.lungs.values()) < 150


def test_upper_abdomen_has_no_lungs(shared_data: Path) -> None:
    folder = shared_data / "upper-abdomen-dicom-j2k"
    case = _case(folder / "dicom")
    right, left = lobe_masks(folder, case.volume)
    assert not right.any() and not left.any()  # the reference agrees: no lung here
    assert case.result.lungs == {}
    assert not any(name.startswith("lung_") for name in case.result.masks)


def test_no_lungs_in_solid_phantom() -> None:
    hu = np.full((40, 40, 20), -1000, np.int16)
    hu[5:35, 5:35, :] = 40
    grid = WorkGrid(hu=hu, spacing_mm=2.0, origin_lps_mm=np.zeros(3))
    result = find_lungs(grid, hu > -400)
    assert result.lungs == {} and result.masks == {}


def test_mediastinum_hilum_near_labelled_pulmonary_arteries(shared_data: Path) -> None:
    """mediastinum-cta-crop: lungs cut by the crop on both sides; each hilum lies near the end
    of the labelled pulmonary artery on its side, whose ends are central and far lung is not."""
    folder = shared_data / "mediastinum-cta-crop"
    case = _case(folder / "ct.nii.gz")
    assert set(case.result.lungs) == {"right", "left"}
    artery = native_labels(folder / "pulmonary_artery.nii.gz", case.volume) > 0
    points = case.volume.index_to_lps(np.argwhere(artery))
    x = points[:, 0]
    ends = {
        "right": points[x <= np.percentile(x, 3)].mean(axis=0),
        "left": points[x >= np.percentile(x, 97)].mean(axis=0),
    }
    for side, info in case.result.lungs.items():
        assert info.hilum_lps_mm is not None
        hilum = np.asarray(info.hilum_lps_mm)
        distance_mm = float(np.linalg.norm(hilum - ends[side]))
        print(f"{side} hilum to labelled PA end: {distance_mm:.1f} mm")
        assert distance_mm < 30
        assert is_central(ends[side], info)[0]
        lateral = -1.0 if side == "right" else 1.0
        far = hilum + np.array([lateral * 60.0, 0.0, -60.0])
        assert not is_central(far, info)[0]
    # the main pulmonary artery (the label's middle, in the mediastinum) is central for both
    # lungs once the caller says it is not inside a lung
    trunk = points[np.abs(x - np.median(x)) < 10].mean(axis=0)
    masks = case.result.masks
    index = tuple(np.rint(case.grid.to_index(trunk)).astype(int))
    in_lung = np.array([masks["lung_right"][index] or masks["lung_left"][index]])
    assert not in_lung[0]
    for info in case.result.lungs.values():
        assert is_central(trunk, info, in_lung=in_lung)[0]
        assert not is_central(ends["left" if info.side == "right" else "right"], info)[0]


def test_is_central_without_hilum_is_peripheral() -> None:
    info = LungInfo("right", 50.0, (0.0, 30.0), None, False, True)
    assert not is_central(np.zeros((3, 3)), info).any()
