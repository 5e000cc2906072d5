"""Everything hospital systems read, in one call: DICOM SEG + SR + SC for DICOM input, FHIR always."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from cementscan.atomic import atomic_path
from cementscan.io import CTVolume
from cementscan.report.dicom_sc import write_sc
from cementscan.report.dicom_seg import build_seg, read_source_datasets, series_findings
from cementscan.report.dicom_sr import write_sr
from cementscan.report.fhir import write_fhir

DICOM_DIR = "dicom"
FHIR_NAME = "fhir_bundle.json"


def write_hospital_formats(
    out_dir: str | Path,
    findings: dict[str, Any],
    label_maps: Sequence[np.ndarray],
    study_volumes: Sequence[CTVolume],
    key_images: Sequence[np.ndarray] | None = None,
    *,
    dicom: bool = True,
    fhir: bool = True,
) -> list[Path]:
    """Write the hospital formats of one analysis; returns the paths written.

    ``label_maps[n]`` and ``study_volumes[n]`` belong to findings.json ``inputs[n]``.
    DICOM output (``out_dir/dicom/``: cement_seg[_n].dcm per series with findings,
    cement_sr.dcm, key_image_NN.dcm) only for series read from DICOM; ``fhir_bundle.json``
    always. Each file appears complete or not at all.
    """
    out = Path(out_dir)
    written: list[Path] = []
    sources: list[list[Dataset] | None] = [
        read_source_datasets(v.source.files)
        if dicom and v.source.format == "dicom" and v.source.files
        else None
        for v in study_volumes
    ]
    if dicom and any(s is not None for s in sources):
        dicom_dir = out / DICOM_DIR
        dicom_dir.mkdir(parents=True, exist_ok=True)
        segs: list[Dataset] = []
        several = len(study_volumes) > 1
        for index, series in enumerate(sources):
            if series is None or not series_findings(findings, index):
                continue  # a SEG needs at least one segment
            seg = build_seg(findings, label_maps[index], series, index)
            target = dicom_dir / (f"cement_seg_{index}.dcm" if several else "cement_seg.dcm")
            with atomic_path(target) as tmp:
                seg.save_as(tmp)
            segs.append(seg)
            written.append(target)
        written.append(write_sr(findings, segs, sources, dicom_dir / "cement_sr.dcm"))
        if key_images:
            first = next(s for s in sources if s is not None)
            written += write_sc(key_images, first[0], dicom_dir)
    if fhir:
        patient_id = next((v.source.patient_id for v in study_volumes if v.source.patient_id), None)
        written.append(write_fhir(findings, out / FHIR_NAME, patient_id=patient_id))
    return written
