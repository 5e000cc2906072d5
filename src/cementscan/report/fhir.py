"""FHIR R4B Bundle of the findings: one DiagnosticReport, one Observation per finding + summary."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from cementscan.findings.io import write_json_atomic
from cementscan.report import codes as cc

# LOINC 18747-6 "CT Study report" names the document type.
REPORT_CODE = {"system": cc.LOINC_SYSTEM, "code": "18747-6", "display": "CT Study report"}
IMAGING_CATEGORY = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "imaging",
    "display": "Imaging",
}


def _coding(code: Any) -> dict[str, str]:
    """A pydicom Code as a FHIR Coding (SCT -> SNOMED URI, local scheme -> our CodeSystem)."""
    system = {"SCT": cc.SNOMED_SYSTEM, "UCUM": cc.UCUM_SYSTEM}.get(
        code.scheme_designator, cc.FHIR_PRIVATE_SYSTEM
    )
    return {"system": system, "code": str(code.value), "display": str(code.meaning)}


def _concept(*codes: Any, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [_coding(c) for c in codes]}
    if text:
        concept["text"] = text
    return concept


def _quantity(value: float, unit: str) -> dict[str, Any]:
    code = {"mL": "mL", "mm": "mm", "1": "1"}[unit]
    return {"value": round(float(value), 6), "unit": unit, "system": cc.UCUM_SYSTEM, "code": code}


def _component(name: Any, **value: Any) -> dict[str, Any]:
    return {"code": _concept(name), **value}


def _finding_observation(finding: dict[str, Any], subject: dict[str, Any] | None) -> dict[str, Any]:
    coded = cc.CATEGORY_CODES[finding["category"]]
    components = [
        _component(
            cc.private("LENGTH", "Length"), valueQuantity=_quantity(finding["length_mm"], "mm")
        ),
        _component(
            cc.private("SIDE", "Side"),
            valueCodeableConcept=_concept(cc.SIDE_CODES[finding["side"]], text=finding["side"]),
        ),
        _component(cc.CONCEPT_CONFIDENCE, valueQuantity=_quantity(finding["confidence"], "1")),
    ]
    if finding.get("level"):
        components.append(_component(cc.CONCEPT_LEVEL, valueString=finding["level"]))
    if finding.get("lung_zone"):
        components.append(_component(cc.CONCEPT_LUNG_ZONE, valueString=finding["lung_zone"]))
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [IMAGING_CATEGORY]}],
        "code": _concept(coded.private_code, coded.property_type, text=finding["category"]),
        "bodySite": _concept(coded.site),
        "identifier": [
            {"system": f"{cc.FHIR_PRIVATE_SYSTEM}/finding-id", "value": str(finding["id"])}
        ],
        "valueQuantity": _quantity(finding["volume_ml"], "mL"),
        "component": components,
    }
    if subject:
        observation["subject"] = subject
    return observation


def _presence(name: Any, region: dict[str, Any]) -> dict[str, Any]:
    code = cc.presence_code(region["assessable"], region["present"])
    return {"code": _concept(name), "valueCodeableConcept": _concept(code)}


def _summary_observations(
    summary: dict[str, Any], subject: dict[str, Any] | None
) -> list[dict[str, Any]]:
    ivc, pce = summary["ivc"], summary["pce"]
    ivc_components = []
    if ivc.get("cranial_extent_level"):
        ivc_components.append(
            _component(cc.CONCEPT_IVC_CRANIAL, valueString=ivc["cranial_extent_level"])
        )
    if ivc.get("length_mm") is not None:
        ivc_components.append(
            _component(cc.CONCEPT_IVC_LENGTH, valueQuantity=_quantity(ivc["length_mm"], "mm"))
        )
    pce_components = [
        _component(cc.CONCEPT_PCE_COUNT, valueInteger=int(pce["count"])),
        _component(cc.CONCEPT_PCE_LATERALITY, valueString=pce["laterality"]),
        _component(cc.CONCEPT_PCE_PREDOMINANCE, valueString=pce["predominance"]),
        _component(cc.CONCEPT_PCE_ZONE, valueString=pce["zone_predominance"]),
        _component(cc.CONCEPT_PCE_PROXIMAL, valueString=pce["most_proximal"]),
    ]
    observations = [
        {"code": _concept(cc.CONCEPT_LEAK), "valueBoolean": bool(summary["leak_present"])},
        {**_presence(cc.CONCEPT_IVC, ivc), "component": ivc_components},
        _presence(cc.CONCEPT_RIGHT_HEART, summary["right_heart"]),
        {**_presence(cc.CONCEPT_PCE, pce), "component": pce_components},
    ]
    out = []
    for obs in observations:
        obs = {k: v for k, v in obs.items() if v != []}  # FHIR forbids empty arrays
        full = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [IMAGING_CATEGORY]}],
            **obs,
        }
        if subject:
            full["subject"] = subject
        out.append(full)
    return out


def conclusion_text(findings: dict[str, Any]) -> str:
    """One paragraph a clinician reads in the EHR: leaks, IVC, right heart, emboli."""
    s = findings["summary"]
    parts = []
    if s["leak_present"]:
        leaks = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["leaks"].items() if v)
        parts.append(f"Cement leakage present ({leaks}).")
    else:
        parts.append("No cement leakage outside the treated vertebrae.")
    ivc = s["ivc"]
    if not ivc["assessable"]:
        parts.append("IVC not assessable.")
    elif ivc["present"]:
        top = ivc.get("cranial_extent_level") or "unknown level"
        parts.append(f"Cement in the IVC, cranial extent {top}.")
    if s["right_heart"]["present"]:
        parts.append("Cement in the right heart.")
    pce = s["pce"]
    if not pce["assessable"]:
        parts.append("Pulmonary arteries not assessable.")
    elif pce["present"]:
        parts.append(
            f"Pulmonary cement embolism: {pce['count']} emboli, {pce['laterality']}, "
            f"predominance {pce['predominance']}, zones {pce['zone_predominance']}."
        )
    else:
        parts.append("No pulmonary cement embolism.")
    suggestion = findings.get("management", {}).get("suggestion")
    if suggestion:
        parts.append(suggestion)
    parts.append("Software output for research use; not a diagnosis.")
    return " ".join(parts)


def fhir_bundle(
    findings: dict[str, Any], patient_ref: str | None = None, patient_id: str | None = None
) -> dict[str, Any]:
    """A validated FHIR R4B collection Bundle.

    ``patient_ref`` (e.g. "Patient/123") links the resources to a Patient the receiver
    knows; without it, ``patient_id`` (the DICOM PatientID) goes in as a logical identifier.
    """
    subject: dict[str, Any] | None = None
    if patient_ref:
        subject = {"reference": patient_ref}
    elif patient_id:
        subject = {"identifier": {"value": patient_id}}
    observations = [_finding_observation(f, subject) for f in findings["findings"]]
    observations += _summary_observations(findings["summary"], subject)
    urls = [f"urn:uuid:{uuid.uuid4()}" for _ in observations]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": {"coding": [REPORT_CODE], "text": "cementscan bone cement report"},
        "conclusion": conclusion_text(findings),
        "result": [{"reference": url} for url in urls],
    }
    if subject:
        report["subject"] = subject
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": report}]
    entries += [
        {"fullUrl": url, "resource": obs} for url, obs in zip(urls, observations, strict=True)
    ]
    data: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    Bundle.model_validate(data)  # raises on anything FHIR R4B would reject
    return data


def write_fhir(
    findings: dict[str, Any],
    out_path: str | Path,
    patient_ref: str | None = None,
    patient_id: str | None = None,
) -> Path:
    """Write the Bundle as JSON atomically; returns ``out_path``."""
    data = fhir_bundle(findings, patient_ref, patient_id)
    json.dumps(data, allow_nan=False)  # fail before touching the target on NaN
    return write_json_atomic(data, out_path)
