"""DICOM Segmentation of the cement findings on the source CT frames (one segment per finding)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, CTImageStorage, generate_uid

from cementscan.atomic import atomic_path
from cementscan.io.dicom import series_key
from cementscan.report.codes import CATEGORY_CODES, PRIVATE_SCHEME, PRIVATE_SCHEME_NAME

MANUFACTURER = "cementscan"
SEG_SERIES_NUMBER = 9901
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def read_source_datasets(files: Sequence[str | Path]) -> list[Dataset]:
    """Headers of the source slices (k order) with blank UIDs filled in consistently."""
    return fill_blank_uids([pydicom.dcmread(f, stop_before_pixels=True) for f in files])


def _blank(ds: Dataset, keyword: str) -> bool:
    return not str(ds.get(keyword, "") or "").strip()


def study_uid_for(ds: Dataset) -> str:
    """The study UID, or one derived from study-level attributes (same for all its series)."""
    if not _blank(ds, "StudyInstanceUID"):
        return str(ds.StudyInstanceUID)
    keys = ("PatientID", "PatientName", "PatientBirthDate", "StudyDate", "StudyTime", "StudyID")
    fields = [str(ds.get(k, "") or "") for k in (*keys, "AccessionNumber")]
    return str(generate_uid(entropy_srcs=["cementscan-blank-study", *fields]))


def fill_blank_uids(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Copies of ``datasets`` whose blank UIDs are replaced by deterministic derived ones.

    Anonymisers sometimes blank SOP/Series/Study UIDs; highdicom and every receiving PACS
    need valid ones. The series UID is the one ``cementscan.io`` made up on load, so
    findings.json, SEG and SR all name the same series.
    """
    out: list[Dataset] = []
    for ds in datasets:
        ds = copy.deepcopy(ds)
        series_uid = series_key(ds)[1]
        if _blank(ds, "SeriesInstanceUID"):
            ds.SeriesInstanceUID = series_uid
        if _blank(ds, "StudyInstanceUID"):
            ds.StudyInstanceUID = study_uid_for(ds)
        if _blank(ds, "SOPClassUID"):
            meta = getattr(ds, "file_meta", None)
            meta_class = str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
            ds.SOPClassUID = UID(meta_class or CTImageStorage)
        if _blank(ds, "SOPInstanceUID"):
            position = ",".join(f"{float(v):.4f}" for v in ds.get("ImagePositionPatient", []))
            ds.SOPInstanceUID = generate_uid(
                entropy_srcs=[
                    "cementscan-blank-sop",
                    series_uid,
                    position,
                    str(ds.get("InstanceNumber", "")),
                ]
            )
        for keyword in TYPE2_PATIENT_STUDY:
            if keyword not in ds:  # type 2: must be present, may be empty; highdicom copies them
                setattr(ds, keyword, "")
        if _blank(ds, "FrameOfReferenceUID"):
            ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["cementscan-blank-for", series_uid])
        out.append(ds)
    return out


def software_version(findings: dict[str, Any]) -> str:
    return str(findings.get("software", {}).get("version") or "unknown")


def algorithm_identification(findings: dict[str, Any]) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name="cementscan",
        family=hd.sr.CodedConcept("123109", "DCM", "Computer Vision"),
        version=software_version(findings),
        source="https://cementscan.org",
    )


def series_findings(findings: dict[str, Any], series_index: int) -> list[dict[str, Any]]:
    """The findings of one series in id order: segment n is the n-th of these."""
    chosen = [f for f in findings["findings"] if int(f["series_index"]) == series_index]
    return sorted(chosen, key=lambda f: int(f["id"]))


def build_seg(
    findings: dict[str, Any],
    label_map: np.ndarray,
    source_datasets: Sequence[Dataset],
    series_index: int = 0,
) -> hd.seg.Segmentation:
    """The Segmentation dataset (not written). ``label_map`` is [i, j, k] on the source grid."""
    sources = fill_blank_uids(source_datasets)
    chosen = series_findings(findings, series_index)
    if not chosen:
        raise ValueError(f"series {series_index} has no findings: nothing to segment")
    if label_map.ndim != 3 or label_map.shape[2] != len(sources):
        raise ValueError(
            f"label map shape {label_map.shape} does not match {len(sources)} source slices"
        )
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if label_map.shape[:2] != (cols, rows):
        raise ValueError(f"label map shape {label_map.shape} is not (columns, rows, slices)")
    # Finding ids -> consecutive segment numbers; anything else (unreported labels) -> 0.
    lut = np.zeros(int(label_map.max()) + 1, dtype=np.uint16)
    for number, finding in enumerate(chosen, start=1):
        if int(finding["id"]) < lut.size:
            lut[int(finding["id"])] = number
    frames = np.ascontiguousarray(lut[label_map].transpose(2, 1, 0))  # (k, rows=j, cols=i)
    algorithm = algorithm_identification(findings)
    descriptions = []
    for number, finding in enumerate(chosen, start=1):
        coded = CATEGORY_CODES[finding["category"]]
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=f"{finding['id']} {finding['category']}"[:64],
                segmented_property_category=coded.property_category,
                segmented_property_type=coded.property_type,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=tracking_uid(sources[0], finding),
                tracking_id=f"cementscan finding {finding['id']}: {coded.label}"[:64],
                anatomic_regions=[coded.site],
            )
        )
    version = software_version(findings)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="cementscan",
        software_versions=version,
        device_serial_number="none",
        content_description="Bone cement found by cementscan (research use)",
        content_label="CEMENT",
        series_description="cementscan bone cement segmentation",
    )
    add_private_scheme(seg)
    return seg


def tracking_uid(source: Dataset, finding: dict[str, Any]) -> str:
    """Stable per finding and series, so SEG and SR name the same finding with one UID."""
    return str(
        generate_uid(
            entropy_srcs=["cementscan-finding", str(source.SeriesInstanceUID), str(finding["id"])]
        )
    )


def add_private_scheme(ds: Dataset) -> None:
    """Declare the local coding scheme (PS3.3 C.12.1.1.3.1) so receivers can look it up."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "cementscan project"
    schemes = list(ds.get("CodingSchemeIdentificationSequence", []))
    schemes.append(item)
    ds.CodingSchemeIdentificationSequence = schemes


def write_seg(
    findings: dict[str, Any],
    label_map: np.ndarray,
    source_datasets: Sequence[Dataset],
    out_path: str | Path,
    series_index: int = 0,
) -> Path:
    """Write the SEG of one source series atomically; returns ``out_path``."""
    seg = build_seg(findings, label_map, source_datasets, series_index)
    with atomic_path(out_path) as tmp:
        seg.save_as(tmp)
    return Path(out_path)
