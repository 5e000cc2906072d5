"""Issue #6 end to end: a generated cohort (phantoms of 3 mm slices, cement inserted into a real CT, bad
inputs) through ``cementscan batch`` and ``cementscan cohort``; the report's rates equal those
counted from the generators' truth."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from cementscan.cohort.database import ResultsDatabase
from cementscan.synth.cohort import make_cohort

SPECS = Path(__file__).resolve().parents[1] / "benchmarks" / "validation_specs"
INSERT_SPEC = SPECS / "tuning" / "chest-cta" / "emboli_r4_l2_lower.json"
N_PHANTOMS = 12


@pytest.fixture(scope="module")
def cohort_run(
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Path,
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("cohort-e2e")
    root = tmp / "root"
    truth = make_cohort(root, N_PHANTOMS, seed=11, pixel_mm=2.0, slice_mm=3.0)
    studies = list(truth["studies"])
    inserted = tmp / "inserted"
    code, _, err = run_cli(
        "insert", shared_data / "chest-cta" / "ct.nii.gz", "--out", inserted, "--spec", INSERT_SPEC
    )
    assert code == 0, err
    key = "volumes/inserted_chest_cta.nii.gz"
    shutil.copy(inserted / "ct.nii.gz", root / key)
    studies.append(
        {
            "key": key,
            "patient": f"volume:{key}",
            "expected_status": "ok",
            "summary": json.loads((inserted / "truth.json").read_text())["summary"],
        }
    )
    out = tmp / "out"
    code, _, err = run_cli("batch", root, "--out", out, "--workers", "2", "--no-progress")
    assert code == 0, err
    code, _, err = run_cli("cohort", out)
    assert code == 0, err
    with ResultsDatabase.open(None, out) as database:
        documents = {r.key: r.document for r in database.load_cohort()}
    return {"studies": studies, "tables": out / "cohort", "documents": documents}


def disagreements(cohort_run: dict[str, Any], *path: str) -> list[str]:
    """Studies whose summary value at ``path`` differs from the truth (for failure messages)."""
    out = []
    for study in cohort_run["studies"]:
        document = cohort_run["documents"].get(study["key"])
        if study["summary"] is None or document is None:
            continue
        want, got = study["summary"], document["summary"]
        for key in path:
            want, got = want.get(key), got.get(key)
        if want != got:
            out.append(f"{study['key']} ({study.get('preset')}): truth {want}, analysed {got}")
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_pce_incidence_equals_the_truth(cohort_run: dict[str, Any]) -> None:
    ok = [s for s in cohort_run["studies"] if s["expected_status"] == "ok"]
    assessable = [s for s in ok if s["summary"]["pce"]["assessable"]]
    with_pce = [s for s in assessable if s["summary"]["pce"]["present"]]
    assert 0 < len(with_pce) < len(assessable)  # the cohort tells a rate, not all or nothing
    (row,) = read_rows(cohort_run["tables"] / "pce_incidence.csv")
    assert (int(row["assessable_studies"]), int(row["pce_studies"])) == (
        len(assessable),
        len(with_pce),
    ), disagreements(cohort_run, "pce", "present")
    assert float(row["incidence"]) == pytest.approx(len(with_pce) / len(assessable), abs=1e-5)
    assert float(row["ci95_low"]) < float(row["incidence"]) < float(row["ci95_high"])


def test_leak_rates_per_study_and_patient_equal_the_truth(cohort_run: dict[str, Any]) -> None:
    ok = [s for s in cohort_run["studies"] if s["expected_status"] == "ok"]
    leaking_patients: dict[str, bool] = defaultdict(bool)
    for study in ok:
        leaking_patients[study["patient"]] |= bool(study["summary"]["leak_present"])
    assert len(leaking_patients) < len(ok)  # some patients have several studies
    rows = read_rows(cohort_run["tables"] / "leak_rates.csv")
    any_rows = {r["unit"]: r for r in rows if r["breakdown"] == "any"}
    expected = {
        "study": (sum(bool(s["summary"]["leak_present"]) for s in ok), len(ok)),
        "patient": (sum(leaking_patients.values()), len(leaking_patients)),
    }
    for unit, (positive, total) in expected.items():
        assert (int(any_rows[unit]["positive"]), int(any_rows[unit]["total"])) == (
            positive,
            total,
        ), (unit, disagreements(cohort_run, "leak_present"))


def test_ivc_involvement_equals_the_truth_and_failures_are_listed(
    cohort_run: dict[str, Any],
) -> None:
    ok = [s for s in cohort_run["studies"] if s["expected_status"] == "ok"]
    assessable = [s for s in ok if s["summary"]["ivc"]["assessable"]]
    present = [s for s in assessable if s["summary"]["ivc"]["present"]]
    site = {r["site"]: r for r in read_rows(cohort_run["tables"] / "vascular_involvement.csv")}
    assert (int(site["ivc"]["assessable_studies"]), int(site["ivc"]["present_studies"])) == (
        len(assessable),
        len(present),
    ), disagreements(cohort_run, "ivc", "present")
    failed = {r["key"]: r["status"] for r in read_rows(cohort_run["tables"] / "failures.csv")}
    expected = {
        s["key"]: s["expected_status"]
        for s in cohort_run["studies"]
        if s["expected_status"] != "ok"
    }
    assert failed == expected
