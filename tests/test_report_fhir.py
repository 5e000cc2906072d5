"""FHIR R4B Bundle: validates with fhir.resources, one Observation per finding, right values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from helpers_report import SMALL_PHANTOM, finding_dict, findings_document

from cementscan.io import load_volume
from cementscan.report.codes import CATEGORY_CODES, FHIR_PRIVATE_SYSTEM
from cementscan.report.fhir import fhir_bundle, write_fhir
from cementscan.synth import make_phantom, preset_spec, write_phantom


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ph = make_phantom(preset_spec("all-leaks", seed=2, **SMALL_PHANTOM))
    root = tmp_path_factory.mktemp("phantom")
    write_phantom(ph, root, dicom=False, png=False)
    volume = load_volume(root / "ct.nii.gz")
    labels = np.asarray(ph.series[0].truth_labels)
    findings = [
        finding_dict(o.id, o.category, labels, volume, side=o.side, level=o.level)
        for o in ph.objects
        if (labels == o.id).any()
    ]
    return findings_document(findings, volume, ph.summary)


def finding_observations(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and any(
            i.get("system", "").endswith("finding-id") for i in e["resource"].get("identifier", [])
        )
    ]


def test_bundle_validates_and_matches_findings(doc: dict[str, Any]) -> None:
    bundle = fhir_bundle(doc, patient_ref="Patient/42")
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    reports = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert len(reports) == 1
    report = reports[0]
    assert report["status"] == "final"
    assert report["code"]["coding"][0]["code"] == "18747-6"
    assert "Pulmonary cement embolism" in report["conclusion"]
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert {r["reference"] for r in report["result"]} <= urls
    observations = finding_observations(bundle)
    assert len(observations) == len(doc["findings"])
    by_id = {int(o["identifier"][0]["value"]): o for o in observations}
    for finding in doc["findings"]:
        obs = by_id[finding["id"]]
        assert obs["code"]["text"] == finding["category"]
        private = next(c for c in obs["code"]["coding"] if c["system"] == FHIR_PRIVATE_SYSTEM)
        assert private["code"] == CATEGORY_CODES[finding["category"]].private_code.value
        assert obs["valueQuantity"]["value"] == pytest.approx(finding["volume_ml"])
        assert obs["valueQuantity"]["code"] == "mL"
        assert obs["subject"] == {"reference": "Patient/42"}
    summary_codes = {
        c["code"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        for c in e["resource"]["code"]["coding"]
    }
    assert {"IVC", "PCE", "LEAK", "RIGHT-HEART"} <= summary_codes


def test_write_fhir(doc: dict[str, Any], tmp_path: Path) -> None:
    path = write_fhir(doc, tmp_path / "fhir_bundle.json", patient_id="PID-1")
    data = json.loads(path.read_text("utf-8"))
    Bundle.model_validate(data)
    assert data["entry"][0]["resource"]["subject"] == {"identifier": {"value": "PID-1"}}


def test_no_findings_not_assessable(doc: dict[str, Any]) -> None:
    from helpers_report import NEGATIVE_SUMMARY

    empty = {**doc, "findings": [], "summary": NEGATIVE_SUMMARY}
    bundle = fhir_bundle(empty)
    Bundle.model_validate(bundle)
    assert finding_observations(bundle) == []
    report = bundle["entry"][0]["resource"]
    assert "Pulmonary arteries not assessable" in report["conclusion"]
