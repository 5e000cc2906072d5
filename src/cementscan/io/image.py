"""Single-file volumes (NIfTI, NRRD, MetaImage) read with SimpleITK into CTVolumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

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
    spacing = tuple(float(s) for s in image.GetSpacing())
    check_spacing(spacing, path)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    check_direction(direction, path)
    # GetArrayViewFromImage is (k, j, i); the transpose is an [i, j, k] view without a copy.
    values = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    hu = to_hu_int16(values, path)
    return CTVolume(
        hu=hu,
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        origin_lps_mm=tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
        direction=direction,
        source=source,
    )


def load_image_file(path: Path) -> CTVolume:
    """Read a NIfTI/NRRD/MetaImage file (any orientation, int or float, scaled or not)."""
    fmt = image_format(path)
    if fmt is None:
        raise InputError("not a supported file type (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd)", path)
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
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read {fmt} file ({_first_itk_line(exc)})", path) from None
    source = SourceInfo(
        path=str(path),
        format=fmt,
        series_description=_meta(reader, "descrip"),
    )
    return from_sitk(image, source)


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
