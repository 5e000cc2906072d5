"""Helpers for the loader tests: altered copies of real DICOM series, SimpleITK references and
re-oriented copies of NIfTI volumes."""

from __future__ import annotations

import copy
import itertools
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

PORTAL = "abdomen-portal-dicom/dicom"  # 51 slices 512x512, 0.805 mm pixels, 5 mm apart, GE
J2K = "upper-abdomen-dicom-j2k/dicom"  # 20 slices, JPEG 2000, blank UIDs
ABDOMEN = "abdomen-native-3mm"  # 122x101x112, 3 mm, RAS
CHEST = "chest-cta"  # 512x512x133, LAS
LUMBAR = "lumbar-crop"  # 73x47x73, PIR
MEDIASTINUM = "mediastinum-cta-crop"  # 122x102x112, LPS
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


# --- DICOM ------------------------------------------------------------------------------------


def read_slices(folder: Path) -> list[Dataset]:
    """Every slice of a one-series folder, pixels included, sorted by z (inferior first)."""
    slices = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def clone(
    slices: Iterable[Dataset], new_series: bool = False, **attributes: object
) -> list[Dataset]:
    """Deep copies with ``attributes`` set; ``new_series`` gives them a new SeriesInstanceUID."""
    series_uid = generate_uid()
    copies = []
    for ds in slices:
        ds = copy.deepcopy(ds)
        if new_series:
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        copies.append(ds)
    return copies


def write_slices(
    slices: Sequence[Dataset], folder: Path, names: Sequence[str] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, ds in enumerate(slices):
        ds.save_as(folder / (names[n] if names else f"slice{n:03d}.dcm"), enforce_file_format=True)
    return folder


def set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Replace an uncompressed slice's pixels (and Rows/Columns) with ``pixels``."""
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def shift_position(ds: Dataset, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> None:
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [round(x + dx, 4), round(y + dy, 4), round(z + dz, 4)]


def sitk_dicom(folder: Path) -> sitk.Image:
    """The reference reading: SimpleITK's series reader on the files GDCM sorts."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


# --- SimpleITK images in [i, j, k] order ---------------------------------------------------------


def sitk_read(path: Path) -> sitk.Image:
    return sitk_dicom(path) if path.is_dir() else sitk.ReadImage(str(path))


def ijk(image: sitk.Image) -> np.ndarray:
    """Voxels indexed [i, j, k] (SimpleITK's arrays are [k, j, i])."""
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def direction_3x3(image: sitk.Image) -> np.ndarray:
    """Row r, column c is GetDirection()[3 * r + c]: columns are the index axes' LPS vectors."""
    return np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)


def image_from_ijk(
    array: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: np.ndarray,
) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return image


def sitk_centroid_lps(label: sitk.Image, value: int) -> np.ndarray:
    """Centroid of ``label == value`` in LPS mm, entirely through SimpleITK's geometry."""
    mean_index = np.argwhere(ijk(label) == value).mean(axis=0)
    return np.asarray(label.TransformContinuousIndexToPhysicalPoint(mean_index.tolist()))


# --- the 48 axis orders and flips -------------------------------------------------------------


def signed_permutations() -> list[tuple[tuple[int, int, int], tuple[bool, bool, bool]]]:
    """All 48 ways to store a volume along permuted and/or reversed index axes."""
    return [
        (perm, flips)  # type: ignore[misc]
        for perm in itertools.permutations(range(3))
        for flips in itertools.product((False, True), repeat=3)
    ]


def reorient(
    array: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: np.ndarray,
    perm: Sequence[int],
    flips: Sequence[bool],
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...], np.ndarray]:
    """The same physical image stored with new index axis ``a`` = old axis ``perm[a]``, reversed
    where ``flips[a]``: returns the new [i, j, k] array, spacing, origin and direction."""
    new = array.transpose(perm)
    for axis, flip in enumerate(flips):
        if flip:
            new = np.flip(new, axis=axis)
    direction = np.asarray(direction, dtype=float)
    new_direction = np.column_stack(
        [direction[:, perm[a]] * (-1.0 if flips[a] else 1.0) for a in range(3)]
    )
    new_spacing = tuple(float(spacing[p]) for p in perm)
    first = np.zeros(3)  # the old index of the new voxel (0, 0, 0)
    for a in range(3):
        if flips[a]:
            first[perm[a]] = array.shape[perm[a]] - 1
    new_origin = np.asarray(origin, dtype=float) + direction @ (np.asarray(spacing) * first)
    return np.ascontiguousarray(new), new_spacing, tuple(new_origin.tolist()), new_direction


def orientation_letters(code: str, perm: Sequence[int], flips: Sequence[bool]) -> str:
    """The orientation code ("RAS", ...) after ``reorient``, worked out from letters alone."""
    opposite = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
    return "".join(
        opposite[code[p]] if flip else code[p] for p, flip in zip(perm, flips, strict=True)
    )


def rotation(z_degrees: float, x_degrees: float) -> np.ndarray:
    """Rz @ Rx: a proper rotation, used as an oblique direction matrix."""
    a, b = np.radians(z_degrees), np.radians(x_degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def covering_grid(image: sitk.Image, direction: np.ndarray, spacing: float) -> sitk.Image:
    """An empty image with ``direction`` and isotropic ``spacing`` covering all of ``image``."""
    size = np.asarray(image.GetSize()) - 1
    corners = np.array(
        [
            image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
            for corner in itertools.product(*[(0, s) for s in size])
        ]
    )
    along = corners @ direction  # coordinates along the new axes
    low, high = along.min(axis=0), along.max(axis=0)
    grid = sitk.Image([int(n) for n in np.ceil((high - low) / spacing) + 1], sitk.sitkUInt8)
    grid.SetSpacing([spacing] * 3)
    grid.SetDirection([float(v) for v in direction.ravel()])
    grid.SetOrigin([float(v) for v in direction @ low])
    return grid


# --- NIfTI ------------------------------------------------------------------------------------


def nifti_image(path: Path) -> nib.Nifti1Image:
    """nibabel's reading of a NIfTI-1 file (an independent check on SimpleITK's geometry)."""
    image = nib.load(path)
    assert isinstance(image, nib.Nifti1Image)
    return image


# --- raw NIfTI header edits -------------------------------------------------------------------

NIFTI1_PIXDIM_OFFSET = 76  # 8 float32: pixdim[0..7]
NIFTI1_SCL_OFFSET = 112  # float32 scl_slope, then scl_inter


def patch_nifti1(
    path: Path, pixdim: dict[int, float] | None = None, scl: tuple[float, float] | None = None
) -> None:
    """Edit an uncompressed NIfTI-1 header in place (nibabel would refuse or 'fix' these)."""
    data = bytearray(path.read_bytes())
    for index, value in (pixdim or {}).items():
        struct.pack_into("<f", data, NIFTI1_PIXDIM_OFFSET + 4 * index, value)
    if scl is not None:
        struct.pack_into("<2f", data, NIFTI1_SCL_OFFSET, *scl)
    path.write_bytes(bytes(data))
