"""DICOM folders: finding the files, grouping them into series and reading a series as a CTVolume."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from warnings import catch_warnings, simplefilter

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from cementscan.errors import InputError
from cementscan.io.checks import check_direction, check_spacing, to_hu_int16
from cementscan.io.volume import CTVolume, SourceInfo

# Slices closer than this fraction of the median spacing are "the same position".
DUPLICATE_POSITION_FRACTION = 0.05
# Spacing irregularity tolerated with a warning; beyond it the series is rejected.
TOLERATED_SPACING_DEVIATION = 0.10
WARN_SPACING_DEVIATION = 0.01
# A gap this many times the median spacing means slices are missing.
MISSING_SLICE_FACTOR = 1.5
MAX_TILT_DEGREES = 0.5
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
CT_IMAGE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
# Image-plane attributes every CT slice needs, and how many numbers each holds.
GEOMETRY_VALUES = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2}


@dataclass
class DicomSeries:
    """The headers of one series found in a folder (pixel data not yet read)."""

    key: str
    series_uid: str
    series_uid_generated: bool
    headers: list[tuple[Path, Dataset]] = field(default_factory=list)

    @property
    def first(self) -> Dataset:
        return self.headers[0][1]

    @property
    def modality(self) -> str:
        return str(self.first.get("Modality", "") or "").upper()

    @property
    def is_localizer(self) -> bool:
        image_type = [str(v).upper() for v in (self.first.get("ImageType") or [])]
        return "LOCALIZER" in image_type or len(self.headers) == 1

    @property
    def orientation(self) -> np.ndarray:
        """3x3 with columns: row direction (i), column direction (j), slice normal (k)."""
        iop = np.asarray([float(v) for v in self.first.ImageOrientationPatient], dtype=float)
        row, col = iop[:3], iop[3:]
        normal = np.cross(row, col)
        return np.column_stack([row, col, normal])

    @property
    def is_axial(self) -> bool:
        return bool(abs(self.orientation[2, 2]) > 0.9)

    def slice_thickness_mm(self) -> float | None:
        return _float(self.first, "SliceThickness")

    def kernel(self) -> str | None:
        return _kernel(self.first)

    def z_range_mm(self) -> tuple[float, float]:
        z = [float(ds.ImagePositionPatient[2]) for _, ds in self.headers]
        return min(z), max(z)

    def source_info(self, root: Path) -> SourceInfo:
        ds = self.first
        return SourceInfo(
            path=str(root),
            format="dicom",
            modality=self.modality,
            series_uid=self.series_uid,
            series_uid_generated=self.series_uid_generated,
            study_uid=_text(ds, "StudyInstanceUID"),
            frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
            patient_id=_text(ds, "PatientID"),
            patient_name=_text(ds, "PatientName"),
            patient_sex=_text(ds, "PatientSex"),
            patient_birth_date=_text(ds, "PatientBirthDate"),
            study_date=_text(ds, "StudyDate"),
            series_description=_text(ds, "SeriesDescription"),
            series_number=_int(ds, "SeriesNumber"),
            manufacturer=_text(ds, "Manufacturer"),
            kvp=_float(ds, "KVP"),
            contrast_agent=_text(ds, "ContrastBolusAgent"),
            slice_thickness_mm=_float(ds, "SliceThickness"),
            convolution_kernel=_kernel(ds),
        )


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    return text or None


def _float(ds: Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = _float(ds, keyword)
    return None if value is None else int(value)


def _kernel(ds: Dataset) -> str | None:
    value = ds.get("ConvolutionKernel")
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    return "\\".join(str(v) for v in value) or None  # multi-valued (e.g. Siemens "Br40", "3")


def iter_files(root: Path) -> Iterable[Path]:
    """Every regular file under ``root``, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def scan_folder(root: Path) -> list[DicomSeries]:
    """Group the DICOM image files under ``root`` into series (headers only).

    Raises InputError for a folder with no DICOM images, a corrupt header, or files of
    several patients.
    """
    if not root.is_dir():
        raise InputError("not a folder", root)
    series: dict[str, DicomSeries] = {}
    saw_dicom = False
    for path in iter_files(root):
        try:
            ds = _dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM: README, checksum files and the like
        except PermissionError:
            raise InputError("permission denied", path) from None
        except Exception as exc:  # pydicom raises many kinds on truncated/garbled headers
            raise InputError(f"corrupt DICOM header ({type(exc).__name__}: {exc})", path) from None
        saw_dicom = True
        sop_class = str(
            ds.get("SOPClassUID", "") or getattr(ds.file_meta, "MediaStorageSOPClassUID", "")
        )
        if sop_class == DICOMDIR_SOP_CLASS:
            continue
        if "ImagePositionPatient" not in ds:
            meta_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", ""))
            if CT_IMAGE_SOP_CLASS in (sop_class, meta_class):  # pydicom reads a cut header silently
                raise InputError(
                    "corrupt or truncated DICOM header: CT image without ImagePositionPatient", path
                )
            continue  # structured reports, presentation states, secondary captures: no geometry
        _check_geometry_values(ds, path)
        key, uid, generated = series_key(ds)
        entry = series.setdefault(
            key, DicomSeries(key=key, series_uid=uid, series_uid_generated=generated)
        )
        entry.headers.append((path, ds))
    if not series:
        what = (
            "no DICOM image with a position (ImagePositionPatient)"
            if saw_dicom
            else "no DICOM files"
        )
        raise InputError(f"{what} found in the folder", root)
    _check_one_patient(root, series.values())
    return sorted(series.values(), key=lambda s: (s.first.get("SeriesNumber") or 0, s.key))


def _dcmread(path: Path, stop_before_pixels: bool = False) -> Dataset:
    """pydicom.dcmread without its warnings: damage is reported once, as an InputError."""
    with catch_warnings():
        simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        for _ in ds:  # values are decoded on first access: decode them here, warnings off
            pass
    return ds


def _check_geometry_values(ds: Dataset, path: Path) -> None:
    for keyword, count in GEOMETRY_VALUES.items():
        try:
            numbers = [float(v) for v in ds.get(keyword)]
            valid = len(numbers) == count and bool(np.all(np.isfinite(numbers)))
        except Exception:  # absent (None), one value, or garbled text
            valid = False
        if not valid:
            raise InputError(
                f"corrupt DICOM header: {keyword} is missing or not {count} numbers", path
            )


def series_key(ds: Dataset) -> tuple[str, str, bool]:
    """Group by SeriesInstanceUID; anonymised series with a blank UID get a stable made-up one."""
    uid = _text(ds, "SeriesInstanceUID")
    if uid:
        return uid, uid, False
    fields = [
        _text(ds, "StudyInstanceUID") or "",
        str(ds.get("SeriesNumber", "")),
        _text(ds, "FrameOfReferenceUID") or "",
        str(ds.get("Rows", "")),
        str(ds.get("Columns", "")),
        ",".join(f"{float(v):.3f}" for v in ds.get("ImageOrientationPatient", [])),
        _text(ds, "SeriesDescription") or "",
    ]
    key = "|".join(fields)
    made_up = generate_uid(entropy_srcs=["cementscan-blank-series", key])
    return "blank:" + hashlib.sha1(key.encode()).hexdigest(), made_up, True


def _check_one_patient(root: Path, series: Iterable[DicomSeries]) -> None:
    ids: set[str] = set()
    names: set[str] = set()
    for s in series:
        for _, ds in s.headers:
            if pid := _text(ds, "PatientID"):
                ids.add(pid)
            if name := _text(ds, "PatientName"):
                names.add(name)
    patients = ids if ids else names
    if len(patients) > 1:
        shown = ", ".join(sorted(patients)[:4])
        raise InputError(
            f"files of {len(patients)} different patients in one folder ({shown}); "
            "give one patient's study per call",
            root,
        )


def read_series(series: DicomSeries, root: Path) -> CTVolume:
    """Read a series' pixels: sorted along the slice normal, rescaled to HU, checked."""
    orientation = series.orientation
    check_direction(orientation, str(series.headers[0][0]))
    normal = orientation[:, 2]
    headers = sorted(
        series.headers,
        key=lambda h: float(np.dot(normal, [float(v) for v in h[1].ImagePositionPatient])),
    )
    _check_consistent(headers)
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    spacing_k, warnings = _slice_spacing(positions, normal, headers)
    first = headers[0][1]
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    spacing = (col_spacing, row_spacing, spacing_k)
    check_spacing(spacing, str(headers[0][0]))

    shape = (int(first.Columns), int(first.Rows), len(headers))
    values = np.empty(shape, dtype=np.float32, order="F")
    for k, (path, _) in enumerate(headers):
        values[:, :, k] = _slice_hu(path).T
    hu = to_hu_int16(values, str(root))
    return CTVolume(
        hu=hu,
        spacing_mm=spacing,
        origin_lps_mm=(float(positions[0, 0]), float(positions[0, 1]), float(positions[0, 2])),
        direction=orientation,
        source=_with_files(series.source_info(root), tuple(str(p) for p, _ in headers)),
        warnings=tuple(warnings),
    )


def _with_files(info: SourceInfo, files: tuple[str, ...]) -> SourceInfo:
    from dataclasses import replace

    return replace(info, files=files)


def _check_consistent(headers: list[tuple[Path, Dataset]]) -> None:
    path0, first = headers[0]
    for path, ds in headers[1:]:
        if (ds.get("Rows"), ds.get("Columns")) != (first.get("Rows"), first.get("Columns")):
            raise InputError(
                f"mixed slice sizes in one series: {ds.get('Rows')}x{ds.get('Columns')} here, "
                f"{first.get('Rows')}x{first.get('Columns')} in {path0.name}",
                path,
            )
        if not np.allclose(
            [float(v) for v in ds.ImageOrientationPatient],
            [float(v) for v in first.ImageOrientationPatient],
            atol=1e-3,
        ):
            raise InputError(
                f"slice orientation differs from {path0.name} in the same series", path
            )
        if "PixelSpacing" not in ds or not np.allclose(
            [float(v) for v in ds.PixelSpacing], [float(v) for v in first.PixelSpacing], rtol=1e-3
        ):
            raise InputError(f"pixel spacing differs from {path0.name} in the same series", path)


def _slice_spacing(
    positions: np.ndarray, normal: np.ndarray, headers: list[tuple[Path, Dataset]]
) -> tuple[float, list[str]]:
    """Spacing along the normal; rejects tilt, duplicates, gaps and uneven spacing beyond tolerance."""
    along = positions @ normal
    steps = np.diff(along)
    median = float(np.median(steps))
    name = lambda k: headers[k][0].name  # noqa: E731
    if median <= 0:
        raise InputError("slices share one position: cannot build a volume", headers[0][0])
    displacement = positions[-1] - positions[0]
    cos_tilt = float(np.dot(displacement, normal) / np.linalg.norm(displacement))
    tilt_deg = float(np.degrees(np.arccos(min(1.0, abs(cos_tilt)))))
    if tilt_deg > MAX_TILT_DEGREES:
        raise InputError(
            f"gantry tilt of {tilt_deg:.1f} degrees: slices are sheared, which cementscan cannot "
            "read; reconstruct without tilt or resample first",
            headers[0][0],
        )
    for k, step in enumerate(steps):
        if step < DUPLICATE_POSITION_FRACTION * median:
            raise InputError(
                f"two slices at the same position ({name(k)} and {name(k + 1)})", headers[k + 1][0]
            )
        if step > MISSING_SLICE_FACTOR * median:
            missing = round(step / median) - 1
            raise InputError(
                f"missing slice(s): a gap of {step:.2f} mm (about {missing} slice(s)) between "
                f"{name(k)} and {name(k + 1)}, where slices are {median:.2f} mm apart",
                headers[k + 1][0],
            )
    deviation = float(np.max(np.abs(steps - median)) / median)
    warnings: list[str] = []
    if deviation > TOLERATED_SPACING_DEVIATION:
        raise InputError(
            f"unevenly spaced slices: spacing varies from {steps.min():.2f} to {steps.max():.2f} mm",
            headers[0][0],
        )
    spacing = median
    if deviation > WARN_SPACING_DEVIATION:
        spacing = float((along[-1] - along[0]) / (len(along) - 1))
        warnings.append(
            f"slice spacing varies by up to {100 * deviation:.1f}% ({steps.min():.3f}-"
            f"{steps.max():.3f} mm); read as evenly spaced at {spacing:.3f} mm"
        )
    return spacing, warnings


def _slice_hu(path: Path) -> np.ndarray:
    """One slice's HU as float32 (rows, columns), Modality LUT (slope/intercept) applied."""
    try:
        ds = _dcmread(path)
        pixels = ds.pixel_array
    except Exception as exc:  # truncated pixel data, unknown codec, ...
        raise InputError(f"cannot decode pixel data ({type(exc).__name__}: {exc})", path) from None
    if pixels.ndim != 2:
        raise InputError(
            f"expected one 2-D frame per file, got pixel data of shape {pixels.shape}", path
        )
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    hu = pixels.astype(np.float32)
    if slope != 1:
        hu *= slope
    if intercept:
        hu += intercept
    return hu
