"""Writing a CTVolume as a DICOM CT series (one file per k slice) with pydicom."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from cementscan.atomic import atomic_path
from cementscan.io.volume import CTVolume

RESCALE_INTERCEPT = -1024.0


def write_dicom_series(
    volume: CTVolume,
    out_dir: str | Path,
    *,
    patient_id: str,
    patient_name: str,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    series_number: int,
    series_description: str,
    convolution_kernel: str = "B30f",
    slice_thickness_mm: float | None = None,
    modality: str = "CT",
    kvp: float = 120.0,
    contrast_agent: str | None = None,
    study_date: str | None = "20250101",
    manufacturer: str = "cementscan synth",
    sop_class_uid: str = CTImageStorage,
    signed: bool = False,
    extra_tags: Mapping[str, Any] | None = None,
    file_prefix: str = "slice",
) -> list[Path]:
    """Write ``volume`` as one DICOM file per k slice into ``out_dir``; return the paths.

    The k axis must be the slice normal (i x j); DICOM keeps ImageOrientationPatient =
    [i-axis direction, j-axis direction] and PixelSpacing = [row spacing (j), column spacing (i)].
    Stored values are HU - RescaleIntercept (unsigned 16-bit) or HU itself (``signed``).
    ``extra_tags`` (keyword -> value) are set last, so tests can make odd inputs (MR headers,
    wrong spacing...); a value of None deletes the tag.
    """
    direction = np.asarray(volume.direction, dtype=float)
    normal = np.cross(direction[:, 0], direction[:, 1])
    if float(np.dot(normal, direction[:, 2])) < 0.999:
        raise ValueError(
            "write_dicom_series needs the third index axis along the slice normal (i x j)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hu = volume.hu
    if signed:
        stored = np.clip(hu, -32768, 32767).astype(np.int16)
        intercept = 0.0
    else:
        stored = np.clip(hu.astype(np.int32) - int(RESCALE_INTERCEPT), 0, 65535).astype(np.uint16)
        intercept = RESCALE_INTERCEPT
    iop = [round(float(v), 8) for v in (*direction[:, 0], *direction[:, 1])]
    sx, sy, sz = (float(s) for s in volume.spacing_mm)
    thickness = float(slice_thickness_mm if slice_thickness_mm is not None else sz)
    written: list[Path] = []
    for k in range(volume.shape[2]):
        position = volume.index_to_lps([0.0, 0.0, float(k)])
        sop_uid = generate_uid(entropy_srcs=[series_uid, str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class_uid)
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(
            str(out / f"{file_prefix}_{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128
        )
        ds.SOPClassUID = UID(sop_class_uid)
        ds.SOPInstanceUID = sop_uid
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.PatientName = patient_name
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.StudyID = "1"
        if study_date:
            ds.StudyDate = study_date
            ds.SeriesDate = study_date
        ds.Manufacturer = manufacturer
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = series_description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ConvolutionKernel = convolution_kernel
        ds.KVP = kvp
        if contrast_agent:
            ds.ContrastBolusAgent = contrast_agent
        ds.SliceThickness = thickness
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [sy, sx]
        ds.SliceLocation = round(float(np.dot(position, normal)), 6)
        ds.PositionReferenceIndicator = ""
        ds.Rows = volume.shape[1]
        ds.Columns = volume.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = 1.0
        ds.RescaleType = "HU"
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        # Rows run along j and columns along i: the pixel array is the [i, j] slice transposed.
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        for keyword, value in (extra_tags or {}).items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        written.append(_save_atomic(ds, out / f"{file_prefix}_{k:04d}.dcm"))
    return written


def _save_atomic(ds: FileDataset, path: Path) -> Path:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
