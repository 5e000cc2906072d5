"""DICOM SEG + SR + SC of the findings: dciodvfy-valid, round-trip, consistent (blank) UIDs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from helpers_report import SMALL_PHANTOM, finding_dict, findings_document
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from cementscan.io import CTVolume, load_volume
from cementscan.report import codes as cc
from cementscan.report.hospital import write_hospital_formats
from cementscan.synth import make_phantom, preset_spec, write_phantom

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    """dciodvfy, installed by tools/install-test-deps.sh when missing and we are root."""
    found = shutil.which("dciodvfy")
    if not found and os.geteuid() == 0:
        subprocess.run(["sh", str(REPO / "tools" / "install-test-deps.sh")], check=False)
        found = shutil.which("dciodvfy")
    if not found:
        pytest.skip("dciodvfy absent and not installable (run tools/install-test-deps.sh as root)")
    return found


def verify(dciodvfy: str, path: Path) -> list[str]:
    """dciodvfy's messages; fails on any Error line, returns the warnings."""
    run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, f"{path.name}: {errors}"
    return [line for line in lines if line.startswith("Warning")]


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ph = make_phantom(preset_spec("all-leaks", seed=2, **SMALL_PHANTOM))
    root = tmp_path_factory.mktemp("phantom")
    write_phantom(ph, root, dicom=True, png=False)
    volume = load_volume(root / "dicom")
    labels = ph.series[0].truth_labels
    assert labels.shape == volume.shape
    findings = [
        finding_dict(
            o.id, o.category, labels, volume, side=o.side, level=o.level, lung_zone=o.lung_zone
        )
        for o in ph.objects
        if (labels == o.id).any()
    ]
    doc = findings_document(findings, volume, ph.summary)
    key = np.zeros((48, 64, 3), np.uint8)
    key[10:20, 5:40] = (255, 0, 0)
    out = tmp_path_factory.mktemp("out")
    written = write_hospital_formats(out, doc, [labels], [volume], [key, key])
    return {"doc": doc, "labels": labels, "volume": volume, "out": out, "written": written}


@pytest.fixture(scope="module")
def blank_uid_case(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    volume = load_volume(shared_data / "upper-abdomen-dicom-j2k" / "dicom")
    assert volume.source.series_uid_generated
    labels = np.zeros(volume.shape, np.uint16)
    i, j, k = (s // 2 for s in volume.shape)
    labels[i - 4 : i + 4, j - 3 : j + 3, k - 2 : k + 2] = 1
    finding = finding_dict(1, "ivc", labels, volume, side="right", level="L1")
    doc = findings_document([finding], volume, findings_summary_ivc())
    out = tmp_path_factory.mktemp("blank")
    key = np.full((32, 32, 3), 128, np.uint8)
    written = write_hospital_formats(out, doc, [labels], [volume], [key])
    return {"doc": doc, "labels": labels, "volume": volume, "out": out, "written": written}


def findings_summary_ivc() -> dict[str, Any]:
    from helpers_report import NEGATIVE_SUMMARY

    summary = {**NEGATIVE_SUMMARY, "leak_present": True, "leaks": {"ivc": 1}}
    summary["ivc"] = {**summary["ivc"], "present": True, "cranial_extent_level": "L1"}
    return summary


def segment_voxel_counts(seg: pydicom.Dataset) -> dict[int, int]:
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    counts: dict[int, int] = {}
    shared = seg.SharedFunctionalGroupsSequence[0]
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        # One-segment SEGs keep the segment identification in the shared groups.
        ident = item if "SegmentIdentificationSequence" in item else shared
        number = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        counts[number] = counts.get(number, 0) + int(frame.sum())
    return counts


def sr_groups(path: Path) -> list[Any]:
    sr = hd.sr.srread(path)
    report = hd.sr.MeasurementReport.from_sequence([sr])
    return list(report.get_volumetric_roi_measurement_groups())


def category_of(group: Any) -> str:
    (evaluation,) = group.get_qualitative_evaluations(name=cc.CONCEPT_CATEGORY)
    return cc.CATEGORY_BY_PRIVATE_VALUE[evaluation.value.value]


def by_name(paths: list[Path], name: str) -> Path:
    return next(p for p in paths if p.name == name)


def test_outputs_pass_dciodvfy(phantom_case: dict[str, Any], dciodvfy: str) -> None:
    names = sorted(p.name for p in phantom_case["written"])
    assert names == [
        "cement_seg.dcm",
        "cement_sr.dcm",
        "fhir_bundle.json",
        "key_image_01.dcm",
        "key_image_02.dcm",
    ]
    for path in phantom_case["written"]:
        if path.suffix == ".dcm":
            verify(dciodvfy, path)


def test_seg_round_trip(phantom_case: dict[str, Any]) -> None:
    doc, labels = phantom_case["doc"], phantom_case["labels"]
    seg = hd.seg.segread(by_name(phantom_case["written"], "cement_seg.dcm"))
    assert seg.SegmentationType == "BINARY"
    findings = sorted(doc["findings"], key=lambda f: f["id"])
    assert len(seg.SegmentSequence) == len(findings)
    counts = segment_voxel_counts(seg)
    volume: CTVolume = phantom_case["volume"]
    for number, (item, finding) in enumerate(zip(seg.SegmentSequence, findings, strict=True), 1):
        coded = cc.CATEGORY_CODES[finding["category"]]
        assert item.SegmentNumber == number
        assert item.SegmentLabel.split()[1] == finding["category"]
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == coded.property_type.value
        assert item.AnatomicRegionSequence[0].CodeValue == coded.site.value
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "cementscan"
        assert counts[number] == int((labels == finding["id"]).sum())
        assert counts[number] * volume.voxel_volume_ml == pytest.approx(finding["volume_ml"])
    source = pydicom.dcmread(volume.source.files[0], stop_before_pixels=True)
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.PatientID == source.PatientID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID


def test_sr_measurements(phantom_case: dict[str, Any]) -> None:
    doc = phantom_case["doc"]
    sr_path = by_name(phantom_case["written"], "cement_sr.dcm")
    seg = pydicom.dcmread(by_name(phantom_case["written"], "cement_seg.dcm"))
    groups = sr_groups(sr_path)
    findings = sorted(doc["findings"], key=lambda f: f["id"])
    assert len(groups) == len(findings)
    for number, (group, finding) in enumerate(zip(groups, findings, strict=True), 1):
        assert category_of(group) == finding["category"]
        (vol,) = group.get_measurements(name=codes.SCT.Volume)
        assert vol.value == pytest.approx(finding["volume_ml"])
        assert vol.unit.value == "ml"
        (length,) = group.get_measurements(name=codes.SCT.Length)
        assert length.value == pytest.approx(finding["length_mm"])
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.referenced_segment_numbers == [number]
    sr = pydicom.dcmread(sr_path)
    assert sr.StudyInstanceUID == seg.StudyInstanceUID
    assert sr.PatientName == seg.PatientName
    # The study summary answers the PCE question (all-leaks: emboli present).
    flat = str(sr)
    assert "Pulmonary cement embolism present" in flat


def test_sc_in_study_new_series(phantom_case: dict[str, Any]) -> None:
    written = phantom_case["written"]
    seg = pydicom.dcmread(by_name(written, "cement_seg.dcm"), stop_before_pixels=True)
    scs = [pydicom.dcmread(by_name(written, f"key_image_0{n}.dcm")) for n in (1, 2)]
    source = pydicom.dcmread(phantom_case["volume"].source.files[0], stop_before_pixels=True)
    for sc in scs:
        assert sc.StudyInstanceUID == seg.StudyInstanceUID
        assert sc.SeriesInstanceUID not in (source.SeriesInstanceUID, seg.SeriesInstanceUID)
        assert sc.pixel_array.shape == (48, 64, 3)
    assert scs[0].SeriesInstanceUID == scs[1].SeriesInstanceUID


def test_blank_uid_source(blank_uid_case: dict[str, Any], dciodvfy: str) -> None:
    written, volume = blank_uid_case["written"], blank_uid_case["volume"]
    warnings: dict[str, list[str]] = {}
    for path in written:
        if path.suffix == ".dcm":
            warnings[path.name] = verify(dciodvfy, path)
    seg = pydicom.dcmread(by_name(written, "cement_seg.dcm"))
    sr = pydicom.dcmread(by_name(written, "cement_sr.dcm"))
    sc = pydicom.dcmread(by_name(written, "key_image_01.dcm"))
    study = seg.StudyInstanceUID
    assert UID(study).is_valid and study == sr.StudyInstanceUID == sc.StudyInstanceUID
    # The SEG references the series UID cementscan.io made up (= findings.json inputs[0]).
    series_uid = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert (
        series_uid == volume.source.series_uid == blank_uid_case["doc"]["inputs"][0]["series_uid"]
    )
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert all(UID(uid).is_valid for uid in referenced)
    evidence = {
        str(series.SeriesInstanceUID): {
            str(i.ReferencedSOPInstanceUID) for i in series.ReferencedSOPSequence
        }
        for study_item in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study_item.ReferencedSeriesSequence
    }
    assert evidence[str(seg.SeriesInstanceUID)] == {str(seg.SOPInstanceUID)}
    assert referenced <= evidence[series_uid]  # same derived source UIDs in SEG and SR
    (group,) = sr_groups(by_name(written, "cement_sr.dcm"))
    assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert category_of(group) == "ivc"
    assert segment_voxel_counts(seg) == {1: int(blank_uid_case["labels"].sum())}
    # Deterministic: a second run derives the same study and source UIDs.
    again = write_hospital_formats(
        blank_uid_case["out"] / "again",
        blank_uid_case["doc"],
        [blank_uid_case["labels"]],
        [volume],
        None,
    )
    seg2 = pydicom.dcmread(by_name(again, "cement_seg.dcm"), stop_before_pixels=True)
    assert seg2.StudyInstanceUID == study
    assert seg2.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    print("dciodvfy warnings:", warnings)


def test_non_dicom_input_writes_fhir_only(phantom_case: dict[str, Any], tmp_path: Path) -> None:
    from dataclasses import replace

    volume: CTVolume = phantom_case["volume"]
    nifti = replace(volume, source=replace(volume.source, format="nifti", files=()))
    written = write_hospital_formats(
        tmp_path, phantom_case["doc"], [phantom_case["labels"]], [nifti], None
    )
    assert [p.name for p in written] == ["fhir_bundle.json"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
