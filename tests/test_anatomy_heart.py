"""Heart and right-heart region on the shared real CTs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cementscan.anatomy.body import body_mask
from cementscan.anatomy.grid import labels_to_volume, make_work_grid
from cementscan.anatomy.heart import find_heart
from cementscan.anatomy.lungs import find_lungs
from cementscan.io import load_volume
from cementscan.io.volume import CTVolume
from cementscan.io.write import to_sitk


def native_labels(path: Path, volume: CTVolume) -> np.ndarray:
    """A label file resampled (nearest) onto the CT's own [i, j, k] grid, in physical space."""
    image = sitk.ReadImage(str(path))
    reference = to_sitk(np.zeros(volume.shape, np.uint8), volume)
    out = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID()
    )
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def chest(shared_data: Path) -> dict[str, object]:
    folder = shared_data / "chest-cta"
    volume = load_volume(folder / "ct.nii.gz")
    grid = make_work_grid(volume)
    body = body_mask(grid)
    start = time.perf_counter()
    lungs = find_lungs(grid, body, volume)
    middle = time.perf_counter()
    heart = find_heart(grid, body, lungs.masks)
    end = time.perf_counter()
    print(f"chest-cta: lungs {middle - start:.2f} s, heart {end - middle:.2f} s")
    names = {v: int(k) for k, v in json.loads((folder / "labels.json").read_text()).items()}
    labelled = native_labels(folder / "labels.nii.gz", volume) == names["heart"]
    return {"volume": volume, "grid": grid, "heart": heart, "labelled": labelled}


def _native(chest: dict[str, object], name: str) -> np.ndarray:
    heart = chest["heart"]
    assert isinstance(heart, dict)
    mask = heart[name].astype(np.uint8)
    return labels_to_volume(mask, chest["grid"], chest["volume"]) > 0  # type: ignore[arg-type]


def test_chest_heart_matches_label(chest: dict[str, object]) -> None:
    found = _native(chest, "heart")
    labelled = chest["labelled"]
    assert isinstance(labelled, np.ndarray)
    dice = 2 * np.sum(found & labelled) / (found.sum() + labelled.sum())
    print(f"chest-cta heart Dice {dice:.3f}")
    assert dice >= 0.8


def _centroids(chest: dict[str, object]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    volume = chest["volume"]
    assert isinstance(volume, CTVolume)
    labelled = chest["labelled"]
    assert isinstance(labelled, np.ndarray)
    right = _native(chest, "right_heart")
    right_lps = volume.index_to_lps(np.argwhere(right).mean(axis=0))
    heart_lps = volume.index_to_lps(np.argwhere(labelled).mean(axis=0))
    right_index = np.rint(np.argwhere(right).mean(axis=0)).astype(int)
    return right_lps, heart_lps, right_index, labelled


def test_chest_right_heart_is_right_and_anterior(chest: dict[str, object]) -> None:
    heart = chest["heart"]
    assert isinstance(heart, dict)
    assert not np.any(heart["right_heart"] & ~heart["heart"])
    right_lps, heart_lps, _, labelled = _centroids(chest)
    assert right_lps[0] < heart_lps[0]  # smaller LPS x: the patient's right
    assert right_lps[1] < heart_lps[1]  # smaller LPS y: anterior
    # Within 10 mm of the labelled heart (see the strict test below for why not inside).
    volume = chest["volume"]
    assert isinstance(volume, CTVolume)
    labelled_lps = volume.index_to_lps(np.argwhere(labelled[::4, ::4, :]) * [4, 4, 1])
    assert np.min(np.linalg.norm(labelled_lps - right_lps, axis=1)) < 10


@pytest.mark.xfail(
    strict=True,
    reason="the heart mask keeps part of the aortic root (as wide as the 14 mm opening ball), "
    "which pulls the right-heart centroid into the labelled aorta, ~7 mm outside the heart label",
)
def test_chest_right_heart_centroid_inside_labelled_heart(chest: dict[str, object]) -> None:
    _, _, right_index, labelled = _centroids(chest)
    assert labelled[tuple(right_index)]


def test_no_heart_in_abdominal_scan(shared_data: Path) -> None:
    """abdomen-native-3mm: only lung bases, no heart."""
    volume = load_volume(shared_data / "abdomen-native-3mm" / "ct.nii.gz")
    grid = make_work_grid(volume)
    body = body_mask(grid)
    lungs = find_lungs(grid, body, volume)
    assert find_heart(grid, body, lungs.masks) == {}


def test_no_heart_without_lungs(shared_data: Path) -> None:
    volume = load_volume(shared_data / "upper-abdomen-dicom-j2k" / "dicom")
    grid = make_work_grid(volume)
    body = body_mask(grid)
    assert find_heart(grid, body, find_lungs(grid, body, volume).masks) == {}
