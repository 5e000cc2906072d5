"""Venous route (IVC, SVC, azygos), aorta and contrast phase on the shared real CTs (issue #3)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cementscan.anatomy import compute_anatomy
from cementscan.anatomy.body import body_mask
from cementscan.anatomy.contrast import contrast_phase, dense_contrast_veins
from cementscan.anatomy.grid import WorkGrid, make_work_grid
from cementscan.anatomy.spine import canal_centerline
from cementscan.anatomy.vessels import VenousRoute, _track, find_venous_route
from cementscan.io import load_volume

MAX_DISTANCE_MM = 5.0
MIN_FRACTION_WITHIN = 0.90


@dataclass
class Case:
    grid: WorkGrid
    canal: np.ndarray
    route: VenousRoute
    seconds: float
    labels: np.ndarray | None  # TotalSegmentator ids on the work grid
    ids: dict[str, int]


def _labels_on_grid(path: Path, grid: WorkGrid) -> np.ndarray:
    image = sitk.ReadImage(str(path))
    resampled = sitk.Resample(
        image,
        grid.reference_image(),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)


_CACHE: dict[str, Case] = {}


def _case(shared: Path, folder: str) -> Case:
    if folder not in _CACHE:
        root = shared / folder
        ct = root / "ct.nii.gz" if (root / "ct.nii.gz").is_file() else root / "dicom"
        grid = make_work_grid(load_volume(ct))
        body = body_mask(grid)
        canal = canal_centerline(grid, body)
        start = time.perf_counter()
        route = find_venous_route(grid, body, canal)
        seconds = time.perf_counter() - start
        labels, ids = None, {}
        if (root / "labels.nii.gz").is_file():
            labels = _labels_on_grid(root / "labels.nii.gz", grid)
            names = json.loads((root / "labels.json").read_text())
            ids = {name: int(key) for key, name in names.items()}
        _CACHE[folder] = Case(grid, canal, route, seconds, labels, ids)
    return _CACHE[folder]


@pytest.fixture(scope="module", params=["abdomen-native-3mm", "chest-cta"])
def labelled(request: pytest.FixtureRequest, shared_data: Path) -> Case:
    return _case(shared_data, request.param)


def _ivc_fraction_within(case: Case) -> float:
    """Share of the IVC label's axial slices where the centerline point lies within 5 mm of
    the label on that slice (slices without a centerline point count as misses)."""
    assert case.labels is not None
    ivc = case.labels == case.ids["inferior_vena_cava"]
    index = case.grid.to_index(case.route.ivc_centerline_lps_mm)
    points = {int(round(k)): (x, y) for x, y, k in index}
    label_slices = np.flatnonzero(ivc.any(axis=(0, 1)))
    hits = 0
    for k in label_slices:
        if k not in points:
            continue
        xs, ys = np.nonzero(ivc[:, :, k])
        x, y = points[k]
        distance_mm = float(np.min(np.hypot(xs - x, ys - y))) * case.grid.spacing_mm
        hits += distance_mm <= MAX_DISTANCE_MM
    return hits / len(label_slices)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.count_nonzero(a & b)) / max(1, int(a.sum() + b.sum()))


def test_ivc_centerline_follows_the_label(labelled: Case) -> None:
    fraction = _ivc_fraction_within(labelled)
    print(f"IVC centerline within {MAX_DISTANCE_MM} mm of the label: {fraction:.3f}")
    assert fraction >= MIN_FRACTION_WITHIN
    line = labelled.route.ivc_centerline_lps_mm
    assert line.shape[1] == 3
    assert np.all(np.diff(line[:, 2]) > 0)  # one point per slice, caudal to cranial


def test_ivc_right_anterior_of_canal_and_right_of_aorta(labelled: Case) -> None:
    grid = labelled.grid
    ivc = grid.to_index(labelled.route.ivc_centerline_lps_mm)
    canal = {int(k): (x, y) for x, y, k in labelled.canal}
    common = [(x, y, canal[int(round(k))]) for x, y, k in ivc if int(round(k)) in canal]
    assert len(common) >= 10
    dx_mm = np.array([(x - c[0]) * grid.spacing_mm for x, _, c in common])
    dy_mm = np.array([(y - c[1]) * grid.spacing_mm for _, y, c in common])
    assert np.median(dx_mm) < -5.0 and np.mean(dx_mm < 0) >= 0.9  # right: smaller x
    assert np.all(dy_mm < -20.0)  # anterior: smaller y
    aorta = {int(round(k)): x for x, _, k in grid.to_index(labelled.route.aorta_centerline_lps_mm)}
    pairs = [(x, aorta[int(round(k))]) for x, _, k in ivc if int(round(k)) in aorta]
    assert len(pairs) >= 10
    assert all(ax > ix for ix, ax in pairs)  # the aorta lies left of the IVC


def test_aorta_mask_overlaps_label(labelled: Case) -> None:
    assert labelled.labels is not None
    dice = _dice(labelled.route.masks["aorta"], labelled.labels == labelled.ids["aorta"])
    print(f"aorta Dice: {dice:.3f}")
    assert dice >= 0.45


def test_ivc_mask_is_not_the_aorta(labelled: Case) -> None:
    assert labelled.labels is not None
    ivc = labelled.route.masks["ivc"]
    aorta_label = labelled.labels == labelled.ids["aorta"]
    assert np.count_nonzero(ivc & aorta_label) <= 0.02 * ivc.sum()
    assert _dice(ivc, labelled.labels == labelled.ids["inferior_vena_cava"]) >= 0.5


def test_chest_cta_arterial_with_dense_svc(shared_data: Path) -> None:
    case = _case(shared_data, "chest-cta")
    assert case.labels is not None
    print(f"chest-cta venous route: {case.seconds:.2f} s")
    assert contrast_phase(case.grid, case.route.masks) == "arterial"
    assert "svc" in dense_contrast_veins(case.grid, case.route.masks)
    assert _dice(case.route.masks["svc"], case.labels == case.ids["superior_vena_cava"]) >= 0.4
    assert "azygos" in case.route.masks


def test_abdomen_native(shared_data: Path) -> None:
    case = _case(shared_data, "abdomen-native-3mm")
    assert contrast_phase(case.grid, case.route.masks) == "native"
    assert dense_contrast_veins(case.grid, case.route.masks) == ()
    # A lumbar scan does not reach the chest: no SVC, no azygos.
    assert "svc" not in case.route.masks and "azygos" not in case.route.masks


def test_abdomen_portal_dicom(shared_data: Path) -> None:
    case = _case(shared_data, "abdomen-portal-dicom")
    assert contrast_phase(case.grid, case.route.masks) == "portal_venous"


def test_cement_in_native_ivc_is_not_called_contrast(shared_data: Path) -> None:
    case = _case(shared_data, "abdomen-native-3mm")
    ivc = case.route.masks["ivc"]
    hu = case.grid.hu.copy()
    hu[ivc] = 2500  # the whole IVC cast with cement
    grid = WorkGrid(hu=hu, spacing_mm=case.grid.spacing_mm, origin_lps_mm=case.grid.origin_lps_mm)
    masks = {"aorta": case.route.masks["aorta"], "ivc": ivc}
    assert dense_contrast_veins(grid, masks, phase="native") == ()


def test_track_follows_the_cheap_voxels() -> None:
    cost = np.ones((20, 20, 30))
    truth = [(5 + k // 6, 12 - k // 10) for k in range(30)]
    for k, (x, y) in enumerate(truth):
        cost[x, y, k] = -1.0
    path = _track(cost, spacing_mm=2.0)
    assert [tuple(p) for p in path] == truth


def test_contrast_phase_thresholds() -> None:
    hu = np.full((20, 20, 20), 40, np.int16)
    grid = WorkGrid(hu=hu, spacing_mm=2.0, origin_lps_mm=np.zeros(3))
    aorta = np.zeros(hu.shape, bool)
    aorta[2:8, 2:8, :] = True
    ivc = np.zeros(hu.shape, bool)
    ivc[12:18, 12:18, :] = True
    masks = {"aorta": aorta, "ivc": ivc}
    assert contrast_phase(grid, masks) == "native"
    hu[aorta] = 380
    assert contrast_phase(grid, masks) == "arterial"
    hu[ivc] = 160
    hu[aorta] = 190
    assert contrast_phase(grid, masks) == "portal_venous"
    assert contrast_phase(grid, {"aorta": aorta}) == "unknown"


def test_the_azygos_arches_into_the_svc_at_t4(shared_data: Path) -> None:
    """chest-cta, classical anatomy: the azygos vein arches over the right main bronchus into
    the SVC at T4. Its mask's top slice lies within the T4 label's height, and the SVC mask
    reaches up to it (the arch was placed at the middle of the SVC's search range, at T6)."""
    folder = shared_data / "chest-cta"
    anatomy = compute_anatomy(load_volume(folder / "ct.nii.gz"))
    grid = anatomy.grid
    labels = _labels_on_grid(folder / "labels.nii.gz", grid)
    names = json.loads((folder / "labels.json").read_text())
    t4 = labels == next(int(key) for key, name in names.items() if name == "vertebrae_T4")
    t4_z_mm = grid.z_mm(np.flatnonzero(t4.any(axis=(0, 1))))

    def top_z_mm(name: str) -> float:
        return float(grid.z_mm(np.flatnonzero(anatomy.masks[name].any(axis=(0, 1)))[-1]))

    assert t4_z_mm.min() <= top_z_mm("azygos") <= t4_z_mm.max()
    assert top_z_mm("svc") >= top_z_mm("azygos")


def test_cement_at_the_svc_atrium_junction_is_not_called_contrast(shared_data: Path) -> None:
    """chest-cta's SVC holds undiluted contrast along its whole length, from the arm veins
    above. Cement reaching the SVC comes from below: cement filling the mask's lowest 20 mm (as
    a right-atrium nodule at the junction did in fresh detection seed 2003) does not make the
    SVC a contrast-filled vein, which would hide the cement as contrast."""
    case = _case(shared_data, "chest-cta")
    svc = case.route.masks["svc"]
    masks = {"aorta": case.route.masks["aorta"], "svc": svc}
    assert dense_contrast_veins(case.grid, masks) == ("svc",)
    ks = np.flatnonzero(svc.any(axis=(0, 1)))
    hu = np.minimum(case.grid.hu, 300).astype(np.int16)  # the contrast diluted away
    low = svc.copy()
    low[:, :, ks[0] + int(round(20.0 / case.grid.spacing_mm)) :] = False
    hu[low] = 1700
    grid = WorkGrid(hu=hu, spacing_mm=case.grid.spacing_mm, origin_lps_mm=case.grid.origin_lps_mm)
    assert dense_contrast_veins(grid, masks, phase="arterial") == ()
