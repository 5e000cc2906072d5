"""The loader puts every voxel where it is in the patient (LPS mm), whatever the storage order.

The inferior vena cava lies right of (smaller x than) and in front of (smaller y than) the spinal
canal: its centroid through cementscan's ``index_to_lps`` must equal SimpleITK's, in the files as
shared (RAS, LAS, DICOM) and in copies re-stored in all 48 axis orders/flips and one oblique grid.
Labels are read with nibabel or SimpleITK (they are not CT), never with the loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from helpers_io import (
    ABDOMEN,
    CHEST,
    J2K,
    LUMBAR,
    PORTAL,
    clone,
    covering_grid,
    direction_3x3,
    ijk,
    image_from_ijk,
    nifti_image,
    orientation_letters,
    patch_nifti1,
    read_slices,
    reorient,
    rotation,
    signed_permutations,
    sitk_centroid_lps,
    sitk_dicom,
    write_slices,
)

from cementscan.io import CTVolume, load_volume

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def label_ids(folder: Path) -> dict[str, int]:
    names = json.loads((folder / "labels.json").read_text())
    return {name: int(value) for value, name in names.items()}


def centroid(volume: CTVolume, mask: np.ndarray) -> np.ndarray:
    """Centroid in LPS mm of a mask on the volume's [i, j, k] grid, via the loader's geometry."""
    assert mask.shape == volume.shape
    assert mask.any()
    return volume.index_to_lps(np.argwhere(mask)).mean(axis=0)


def assert_ivc_right_and_anterior_of_canal(
    volume: CTVolume, ivc: np.ndarray, canal: np.ndarray
) -> None:
    """At the IVC's levels, the IVC is > 5 mm to the patient's right of the canal, and in front."""
    ivc_points = volume.index_to_lps(np.argwhere(ivc))
    canal_points = volume.index_to_lps(np.argwhere(canal))
    low, high = ivc_points[:, 2].min(), ivc_points[:, 2].max()
    canal_points = canal_points[(canal_points[:, 2] >= low) & (canal_points[:, 2] <= high)]
    assert len(canal_points) > 20, "the canal label should cover the IVC's levels"
    assert ivc_points[:, 0].mean() < canal_points[:, 0].mean() - 5.0
    assert ivc_points[:, 1].mean() < canal_points[:, 1].mean() - 20.0


# --- the files as shared ----------------------------------------------------------------------


@pytest.mark.parametrize("folder", [ABDOMEN, CHEST])
def test_ivc_centroid_in_nifti_equals_simpleitk(shared_data: Path, folder: str) -> None:
    ids = label_ids(shared_data / folder)
    volume = load_volume(shared_data / folder / "ct.nii.gz")
    label_file = shared_data / folder / "labels.nii.gz"
    label_image = nifti_image(label_file)
    labels = np.asanyarray(label_image.dataobj)  # nibabel's array is [i, j, k]
    # the label shares the CT's grid: nibabel's affine (RAS) is the loader's (LPS)
    np.testing.assert_allclose(RAS_TO_LPS @ label_image.affine, volume.affine_lps, atol=1e-3)

    ivc, canal = ids["inferior_vena_cava"], ids["spinal_cord"]
    expected = sitk_centroid_lps(sitk.ReadImage(str(label_file)), ivc)
    found = centroid(volume, labels == ivc)
    assert np.linalg.norm(found - expected) < 0.5 * min(volume.spacing_mm)
    assert_ivc_right_and_anterior_of_canal(volume, labels == ivc, labels == canal)


def test_ivc_centroid_in_dicom_equals_simpleitk(shared_data: Path) -> None:
    """The j2k DICOM's label is stored y-flipped: compare only in physical space.

    The label is resampled onto SimpleITK's reading of the DICOM grid, whose voxels must be
    the loader's voxel for voxel; the loader's geometry then has to put the IVC where the label's
    own geometry does.
    """
    folder = shared_data / J2K.split("/")[0]
    ids = label_ids(folder)
    volume = load_volume(shared_data / J2K)
    reference = sitk_dicom(shared_data / J2K)
    assert np.array_equal(volume.hu, ijk(reference))

    label_image = sitk.ReadImage(str(folder / "labels.nii.gz"))
    assert direction_3x3(label_image)[1, 1] == -1.0 and volume.direction[1, 1] == 1.0  # y-flipped
    on_ct_grid = ijk(
        sitk.Resample(label_image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    )
    ivc, canal = ids["inferior_vena_cava"], ids["spinal_cord"]
    expected = sitk_centroid_lps(label_image, ivc)
    found = centroid(volume, on_ct_grid == ivc)
    assert np.linalg.norm(found - expected) < 0.5 * min(volume.spacing_mm)
    assert_ivc_right_and_anterior_of_canal(volume, on_ct_grid == ivc, on_ct_grid == canal)
    # the IVC holds blood, not air or bone, in the loader's voxels
    assert 0 < np.median(volume.hu[on_ct_grid == ivc]) < 300


# --- the same physical image stored 48 ways and obliquely --------------------------------------


@pytest.fixture(scope="module")
def abdomen(shared_data: Path) -> dict[str, Any]:
    folder = shared_data / ABDOMEN
    ids = label_ids(folder)
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    labels = sitk.ReadImage(str(folder / "labels.nii.gz"))
    hu = ijk(ct)
    metal = np.unravel_index(np.argmax(hu), hu.shape)  # the implant in the left femur
    return {
        "ct": ct,
        "labels": labels,
        "hu": hu.astype(np.int16),
        "label_array": ijk(labels),
        "ivc": ids["inferior_vena_cava"],
        "canal": ids["spinal_cord"],
        "ivc_lps": sitk_centroid_lps(labels, ids["inferior_vena_cava"]),
        "canal_lps": sitk_centroid_lps(labels, ids["spinal_cord"]),
        "metal_lps": np.asarray(ct.TransformIndexToPhysicalPoint([int(v) for v in metal])),
    }


FLIPS = signed_permutations()


def test_there_are_48_distinct_storage_orders() -> None:
    codes = {orientation_letters("RAS", perm, flips) for perm, flips in FLIPS}
    assert len(FLIPS) == 48 and len(codes) == 48


@pytest.mark.parametrize(
    ("perm", "flips"), FLIPS, ids=[orientation_letters("RAS", p, f) for p, f in FLIPS]
)
def test_every_axis_order_and_flip_keeps_the_anatomy_in_place(
    abdomen: dict[str, Any], tmp_path: Path, perm: tuple[int, ...], flips: tuple[bool, ...]
) -> None:
    ct = abdomen["ct"]
    geometry = (ct.GetSpacing(), ct.GetOrigin(), direction_3x3(ct), perm, flips)
    hu, spacing, origin, direction = reorient(abdomen["hu"], *geometry)
    labels, *_ = reorient(abdomen["label_array"], *geometry)
    sitk.WriteImage(image_from_ijk(hu, spacing, origin, direction), str(tmp_path / "ct.nii"))
    sitk.WriteImage(
        image_from_ijk(labels, spacing, origin, direction), str(tmp_path / "labels.nii")
    )

    volume = load_volume(tmp_path / "ct.nii")
    label_image = nifti_image(tmp_path / "labels.nii")
    label_array = np.asanyarray(label_image.dataobj)
    assert volume.orientation_code() == orientation_letters("RAS", perm, flips)
    for axis, letter in enumerate(orientation_letters("RAS", perm, flips)):
        lps_axis = max("LPS".find(letter), "RAI".find(letter))
        assert volume.lps_axis_of(axis) == lps_axis and volume.index_axis_along(lps_axis) == axis
    assert volume.shape == label_array.shape == hu.shape
    np.testing.assert_allclose(RAS_TO_LPS @ label_image.affine, volume.affine_lps, atol=1e-3)

    ivc = label_array == abdomen["ivc"]
    np.testing.assert_allclose(centroid(volume, ivc), abdomen["ivc_lps"], atol=0.01)
    canal = label_array == abdomen["canal"]
    np.testing.assert_allclose(centroid(volume, canal), abdomen["canal_lps"], atol=0.01)
    assert_ivc_right_and_anterior_of_canal(volume, ivc, canal)
    metal = np.unravel_index(np.argmax(volume.hu), volume.shape)
    np.testing.assert_allclose(
        volume.index_to_lps(np.asarray(metal)), abdomen["metal_lps"], atol=0.01
    )
    assert abdomen["metal_lps"][0] > 50  # left femur: large x


def test_oblique_grid_keeps_the_anatomy_in_place(abdomen: dict[str, Any], tmp_path: Path) -> None:
    """Resampled onto a grid rotated 20 degrees about z and 10 about x (labels nearest-neighbour)."""
    oblique = rotation(20.0, 10.0)
    grid = covering_grid(abdomen["ct"], oblique, spacing=3.0)
    ct = sitk.Resample(
        abdomen["ct"], grid, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16
    )
    labels = sitk.Resample(abdomen["labels"], grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))

    volume = load_volume(tmp_path / "ct.nii.gz")
    written = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    np.testing.assert_allclose(volume.direction, oblique, atol=1e-5)
    np.testing.assert_allclose(volume.direction, direction_3x3(written), atol=1e-9)
    np.testing.assert_allclose(volume.origin_lps_mm, written.GetOrigin(), atol=1e-6)
    assert np.array_equal(volume.hu, ijk(written))

    label_array = np.asanyarray(nifti_image(tmp_path / "labels.nii.gz").dataobj)
    ivc = label_array == abdomen["ivc"]
    canal = label_array == abdomen["canal"]
    assert np.linalg.norm(centroid(volume, ivc) - abdomen["ivc_lps"]) < 1.5  # half a voxel
    assert np.linalg.norm(centroid(volume, canal) - abdomen["canal_lps"]) < 1.5
    assert_ivc_right_and_anterior_of_canal(volume, ivc, canal)


# --- other file formats and voxel types -------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "fmt"),
    [(".nrrd", "nrrd"), (".nhdr", "nrrd"), (".mha", "metaimage"), (".mhd", "metaimage")],
)
def test_nrrd_and_metaimage_copies_load_identically(
    shared_data: Path, tmp_path: Path, suffix: str, fmt: str
) -> None:
    source = shared_data / LUMBAR / "ct.nii.gz"  # stored PIR: sagittal slices
    original = load_volume(source)
    copy_path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(source)), str(copy_path), True)
    volume = load_volume(copy_path)
    assert volume.source.format == fmt
    assert volume.orientation_code() == "PIR"
    assert np.array_equal(volume.hu, original.hu)
    np.testing.assert_allclose(volume.spacing_mm, original.spacing_mm, atol=1e-6)
    np.testing.assert_allclose(volume.origin_lps_mm, original.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(volume.direction, original.direction, atol=1e-6)


@pytest.fixture(scope="module")
def abdomen_nifti(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nifti_image(shared_data / ABDOMEN / "ct.nii.gz")
    return np.asanyarray(image.dataobj).astype(np.int32), image.affine


@pytest.mark.parametrize(
    "storage", ["float32-slope-inter", "int16-inter", "uint16-inter", "int32", "float64-fraction"]
)
def test_stored_values_are_scaled_to_hu(
    abdomen_nifti: tuple[np.ndarray, np.ndarray], tmp_path: Path, storage: str
) -> None:
    hu, affine = abdomen_nifti
    expected = hu
    scl: tuple[float, float] | None = None
    if storage == "float32-slope-inter":
        raw: np.ndarray = ((hu + 1024) * 2).astype(np.float32)
        scl = (0.5, -1024.0)
    elif storage == "int16-inter":
        raw, scl = (hu + 1024).astype(np.int16), (1.0, -1024.0)
    elif storage == "uint16-inter":
        raw, scl = np.clip(hu + 1024, 0, None).astype(np.uint16), (1.0, -1024.0)
        expected = np.maximum(hu, -1024)
    elif storage == "int32":
        raw = hu
    else:
        raw = hu.astype(np.float64) + 0.3  # the loader rounds to whole HU
    path = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(raw, affine), path)
    if scl is not None:
        patch_nifti1(path, scl=scl)
    assert np.asanyarray(nifti_image(path).dataobj).dtype == (
        raw.dtype if scl is None else np.float64
    )

    volume = load_volume(path)
    assert volume.hu.dtype == np.int16
    assert np.array_equal(volume.hu, expected)


# --- DICOM geometry that the shared series do not exercise ------------------------------------


def _rotated_stack(slices: list[Any], row: np.ndarray, col: np.ndarray) -> list[Any]:
    """Slices with orientation (row, col) stacked 5 mm apart along row x col from the first."""
    normal = np.cross(row, col)
    start = np.asarray([float(v) for v in slices[0].ImagePositionPatient])
    iop = [round(float(v), 6) for v in (*row, *col)]
    copies = clone(slices, ImageOrientationPatient=iop)
    for k, ds in enumerate(copies):
        ds.ImagePositionPatient = [round(float(v), 4) for v in start + 5.0 * k * normal]
    return copies


@pytest.mark.parametrize("variant", ["anisotropic-pixels", "oblique", "normal-toward-feet"])
def test_dicom_geometry_equals_simpleitk(shared_data: Path, tmp_path: Path, variant: str) -> None:
    slices = read_slices(shared_data / PORTAL)[20:28]
    if variant == "anisotropic-pixels":
        slices = clone(slices, PixelSpacing=[0.7, 0.9])  # rows 0.7 mm apart, columns 0.9 mm
    elif variant == "oblique":
        turn = rotation(20.0, 0.0)
        slices = _rotated_stack(slices, turn[:, 0], turn[:, 1])
    else:  # columns run anterior: the slice normal points to the feet
        slices = _rotated_stack(slices, np.array([1.0, 0, 0]), np.array([0, -1.0, 0]))
    folder = write_slices(slices, tmp_path / "dicom")

    volume = load_volume(folder)
    reference = sitk_dicom(folder)
    assert volume.shape == reference.GetSize()
    # positions are written with 4 decimals: the oblique slice spacing is 5 mm to within 1e-5
    np.testing.assert_allclose(volume.spacing_mm, reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(volume.origin_lps_mm, reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.direction, direction_3x3(reference), atol=1e-6)
    assert np.array_equal(volume.hu, ijk(reference))
    if variant == "anisotropic-pixels":
        assert volume.spacing_mm[:2] == pytest.approx((0.9, 0.7))
    if variant == "normal-toward-feet":
        assert volume.orientation_code() == "LAI"
