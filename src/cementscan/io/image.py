"""Single-file volumes (NIfTI, NRRD, MetaImage) read with SimpleITK into CTVolumes."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nibabel.nifti1 import Nifti1Header
from nibabel.nifti2 import Nifti2Header
from nibabel.openers import ImageOpener

from cementscan.errors import InputError
from cementscan.io.checks import check_direction, check_shape, check_spacing, to_hu_int16
from cementscan.io.volume import CTVolume, SourceInfo

FORMATS_BY_SUFFIX = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}


def image_format(path: Path) -> str | None:
    """The format name of a single-file volume from its suffix, or None."""
    name = path.name.lower()
    for suffix, fmt in FORMATS_BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    return None


def from_sitk(image: sitk.Image, source: SourceInfo) -> CTVolume:
    """A checked CTVolume from a 3-D scalar SimpleITK image holding HU."""
    path = source.path
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{image.GetNumberOfComponentsPerPixel()} values per voxel (RGB or vector image), "
            "not a CT",
            path,
        )
    check_shape(tuple(image.GetSize()), path)
    sx, sy, sz = (float(s) for s in image.GetSpacing())
    spacing = (sx, sy, sz)
    check_spacing(spacing, path)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    check_direction(direction, path)
    # GetArrayViewFromImage is (k, j, i); the transpose is an [i, j, k] view without a copy.
    ox, oy, oz = image.GetOrigin()
    values = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    hu = to_hu_int16(values, path)
    return CTVolume(
        hu=hu,
        spacing_mm=spacing,
        origin_lps_mm=(float(ox), float(oy), float(oz)),
        direction=direction,
        source=source,
    )


def load_image_file(path: Path) -> CTVolume:
    """Read a NIfTI/NRRD/MetaImage file (any orientation, int or float, scaled or not)."""
    fmt = image_format(path)
    if fmt is None:
        raise InputError(
            "not a supported file type (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd)", path
        )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        if reader.GetDimension() != 3:
            raise InputError(
                f"expected a 3-D volume, the file has {reader.GetDimension()} dimensions "
                f"{tuple(reader.GetSize())}",
                path,
            )
        if fmt == "nifti":
            _check_nifti_file(path)
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read {fmt} file ({_first_itk_line(exc)})", path) from None
    source = SourceInfo(
        path=str(path),
        format=fmt,
        series_description=_meta(reader, "descrip"),
    )
    return from_sitk(image, source)


def _check_nifti_file(path: Path) -> None:
    """What ITK's NIfTI reader hides: it reads a zero pixdim as 1 mm, NaN/inf voxels as 0 and a
    truncated file (plain or gzipped) as if complete, so check the raw header and voxel bytes."""
    with ImageOpener(str(path)) as f:
        raw = f.read(540)
    nifti2 = int.from_bytes(raw[:4], "little") == 540 or int.from_bytes(raw[:4], "big") == 540
    header = (Nifti2Header if nifti2 else Nifti1Header).from_fileobj(io.BytesIO(raw), check=False)
    ndim = int(header["dim"][0])
    dims = tuple(int(d) for d in header["dim"][1 : ndim + 1])
    for axis, size in zip("ijk", header["pixdim"][1 : min(ndim, 3) + 1], strict=False):
        if not np.isfinite(size) or size == 0:
            raise InputError(
                f"voxel spacing along {axis} is {float(size):g} mm in the header (must be > 0)",
                path,
            )
    dtype = header.get_data_dtype()
    offset = int(header["vox_offset"])
    needed = offset + int(np.prod(dims)) * dtype.itemsize
    truncated = InputError(
        f"truncated file: {'x'.join(map(str, dims))} {dtype.name} voxels need {needed} bytes, "
        "fewer are present",
        path,
    )
    if dtype.kind == "f":
        bad = _count_non_finite(path, offset, needed - offset, dtype)
        if bad is None:
            raise truncated
        if bad:
            raise InputError(f"{bad} voxels are NaN or infinite", path)
    elif not _has_bytes(path, needed):
        raise truncated


def _count_non_finite(path: Path, offset: int, nbytes: int, dtype: np.dtype) -> int | None:
    """NaN/inf values among the raw voxels, read in chunks; None when the file ends too soon."""
    bad = 0
    try:
        with ImageOpener(str(path)) as f:
            f.seek(offset)
            while nbytes > 0:
                want = min(nbytes, (1 << 24) // dtype.itemsize * dtype.itemsize)
                chunk = f.read(want)
                if len(chunk) < want:
                    return None
                bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(chunk, dtype))))
                nbytes -= want
    except (EOFError, OSError, zlib.error):
        return None
    return bad


def _has_bytes(path: Path, needed: int) -> bool:
    """Whether a plain or gzipped file holds at least ``needed`` bytes (decompressed)."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
        if not gzipped:
            return path.stat().st_size >= needed
        f.seek(-4, 2)
        # A gzip file ends with its uncompressed size mod 2**32: a cut file ends in other bytes.
        if int.from_bytes(f.read(4), "little") == needed % 2**32:
            return True
    total = 0  # several gzip members, bytes after the voxels, or cut: count them for certain
    try:
        with gzip.open(path, "rb") as g:
            while chunk := g.read(1 << 24):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        return False
    return total >= needed


def _meta(reader: sitk.ImageFileReader, key: str) -> str | None:
    if reader.HasMetaDataKey(key):
        value = reader.GetMetaData(key).strip()
        return value or None
    return None


def _first_itk_line(exc: Exception) -> str:
    """ITK errors are several lines with C++ file names: keep the line a person can read."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()
    for line in reversed(lines):
        if not line.startswith(("Exception thrown", "/", "sitk::ERROR")):
            return line
    return lines[-1] if lines else "unreadable"
