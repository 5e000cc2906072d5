"""Comprehensive 3D SR (TID 1500 measurement report) of the findings, referencing the SEG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from cementscan.atomic import atomic_path
from cementscan.report import codes as cc
from cementscan.report.dicom_seg import (
    MANUFACTURER,
    add_private_scheme,
    fill_blank_uids,
    series_findings,
    software_version,
    tracking_uid,
)

SR_SERIES_NUMBER = 9902


def _segment_numbers(seg: Dataset) -> dict[str, int]:
    """Tracking UID -> segment number, so each finding points at its own segment."""
    return {
        str(item.TrackingUID): int(item.SegmentNumber)
        for item in seg.SegmentSequence
        if "TrackingUID" in item
    }


def _finding_group(
    finding: dict[str, Any],
    source: Dataset,
    segs: Sequence[Dataset],
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    coded = cc.CATEGORY_CODES[finding["category"]]
    uid = tracking_uid(source, finding)
    referenced = None
    for seg in segs:
        number = _segment_numbers(seg).get(uid)
        if number is not None:
            # Built by hand: highdicom's from_segmentation fails on one-segment SEGs, whose
            # segment identification sits in the shared functional groups.
            referenced = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(
                    seg.ReferencedSeriesSequence[0].SeriesInstanceUID
                ),
            )
            break
    if referenced is None:
        raise ValueError(f"finding {finding['id']} has no segment in the SEG(s) given")
    side = finding["side"]
    # CID 244 has no "midline": it is a topographical modifier, right/left a laterality.
    site = hd.sr.FindingSite(
        anatomic_location=coded.site,
        laterality=cc.SIDE_CODES[side] if side in ("right", "left") else None,
        topographical_modifier=cc.SIDE_CODES["midline"] if side == "midline" else None,
    )
    measurements = [
        hd.sr.Measurement(
            name=codes.SCT.Volume,
            value=float(finding["volume_ml"]),
            unit=cc.UCUM_ML,
            algorithm_id=algorithm,
        ),
        hd.sr.Measurement(
            name=codes.SCT.Length,
            value=float(finding["length_mm"]),
            unit=cc.UCUM_MM,
            algorithm_id=algorithm,
        ),
        hd.sr.Measurement(
            name=cc.CONCEPT_CONFIDENCE,
            value=float(finding["confidence"]),
            unit=cc.UCUM_ONE,
            algorithm_id=algorithm,
        ),
    ]
    evaluations = [hd.sr.QualitativeEvaluation(cc.CONCEPT_CATEGORY, coded.private_code)]
    if finding.get("level"):
        evaluations.append(
            hd.sr.QualitativeEvaluation(cc.CONCEPT_LEVEL, cc.level_code(finding["level"]))
        )
    if finding.get("lung_zone"):
        evaluations.append(
            hd.sr.QualitativeEvaluation(cc.CONCEPT_LUNG_ZONE, cc.value_code(finding["lung_zone"]))
        )
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uid, identifier=f"cementscan finding {finding['id']}: {coded.label}"
        ),
        referenced_segment=referenced,
        finding_type=coded.property_type,
        finding_category=coded.property_category,
        algorithm_id=algorithm,
        finding_sites=[site],
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def _summary_group(
    findings: dict[str, Any], algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    s = findings["summary"]
    ivc, heart, pce = s["ivc"], s["right_heart"], s["pce"]
    qe = hd.sr.QualitativeEvaluation
    evaluations = [
        qe(cc.CONCEPT_LEAK, cc.YES if s["leak_present"] else cc.NO),
        qe(cc.CONCEPT_IVC, cc.presence_code(ivc["assessable"], ivc["present"])),
        qe(cc.CONCEPT_RIGHT_HEART, cc.presence_code(heart["assessable"], heart["present"])),
        qe(cc.CONCEPT_PCE, cc.presence_code(pce["assessable"], pce["present"])),
    ]
    if ivc.get("cranial_extent_level"):
        evaluations.append(qe(cc.CONCEPT_IVC_CRANIAL, cc.level_code(ivc["cranial_extent_level"])))
    measurements: list[hd.sr.Measurement] = []
    if ivc.get("length_mm") is not None:
        measurements.append(
            hd.sr.Measurement(cc.CONCEPT_IVC_LENGTH, float(ivc["length_mm"]), cc.UCUM_MM)
        )
    if pce["assessable"]:
        measurements.append(
            hd.sr.Measurement(cc.CONCEPT_PCE_COUNT, float(pce["count"]), cc.UCUM_ONE)
        )
        evaluations += [
            qe(cc.CONCEPT_PCE_LATERALITY, cc.value_code(pce["laterality"])),
            qe(cc.CONCEPT_PCE_PREDOMINANCE, cc.value_code(pce["predominance"])),
            qe(cc.CONCEPT_PCE_ZONE, cc.value_code(pce["zone_predominance"])),
            qe(cc.CONCEPT_PCE_PROXIMAL, cc.value_code(pce["most_proximal"])),
        ]
        if pce.get("max_length_mm") is not None:
            measurements.append(
                hd.sr.Measurement(
                    cc.CONCEPT_PCE_MAX_LENGTH, float(pce["max_length_mm"]), cc.UCUM_MM
                )
            )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="cementscan study summary"),
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
    )


def build_sr(
    findings: dict[str, Any],
    seg_datasets: Dataset | Sequence[Dataset],
    source_datasets: Sequence[Any],
) -> hd.sr.Comprehensive3DSR:
    """The SR dataset.

    ``source_datasets`` is one series' slices, or a list with one entry per findings.json
    ``inputs[]`` series (its slices, or None for a non-DICOM series, whose findings are left out).
    """
    segs = [seg_datasets] if isinstance(seg_datasets, Dataset) else list(seg_datasets)
    series_list: list[list[Dataset] | None] = (
        [fill_blank_uids(source_datasets)]
        if source_datasets and isinstance(source_datasets[0], Dataset)
        else [None if s is None else fill_blank_uids(s) for s in source_datasets]
    )
    algorithm = hd.sr.AlgorithmIdentification(name="cementscan", version=software_version(findings))
    groups: list[Any] = []
    for index, sources in enumerate(series_list):
        if sources is None:
            continue
        for finding in series_findings(findings, index):
            groups.append(_finding_group(finding, sources[0], segs, algorithm))
    groups.append(_summary_group(findings, algorithm))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="cementscan", manufacturer_name=MANUFACTURER
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ComputedTomography,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    evidence = [*segs, *(ds for sources in series_list if sources for ds in sources)]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,  # unverified machine output: a physician has not signed it
        series_description="cementscan cement findings (research use)",
    )
    add_private_scheme(sr)
    return sr


def write_sr(
    findings: dict[str, Any],
    seg_datasets: Dataset | Sequence[Dataset],
    source_datasets: Sequence[Any],
    out_path: str | Path,
) -> Path:
    """Write the Comprehensive 3D SR atomically; returns ``out_path``."""
    sr = build_sr(findings, seg_datasets, source_datasets)
    with atomic_path(out_path) as tmp:
        sr.save_as(tmp)
    return Path(out_path)
