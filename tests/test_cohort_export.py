"""``cementscan export OUTDIR --csv``: findings and studies tables from the results database."""

from __future__ import annotations

import copy
import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun

from cementscan.cohort import export
from cementscan.cohort.database import DEFAULT_DB_FILE, ResultsDatabase
from cementscan.cohort.pseudonym import load_or_create_secret, patient_pseudonym
from cementscan.cohort.records import StudyInput, StudyOutcome
from cementscan.findings.vocabulary import LEAK_CATEGORIES

Cli = Callable[..., CliRun]


def _negative(document: dict[str, Any]) -> dict[str, Any]:
    """The same study with no cement found outside the vertebrae and one unnamed level."""
    negative = copy.deepcopy(document)
    negative["findings"] = [f for f in negative["findings"] if f["category"] == "intravertebral"]
    summary = negative["summary"]
    summary["treated_levels"][0]["level"] = None
    summary.update(leak_present=False, leaks={})
    summary["pce"].update(present=False, count=0)
    return negative


def _fill(db_url: str | None, out_dir: Path, document: dict[str, Any]) -> dict[str, str]:
    """Three studies (leaks, none, failed) of two patients; returns key -> pseudonym."""
    secret = load_or_create_secret(out_dir)
    cases = [
        ("a-leaks", "PID1", "ok", document, None),
        ("b-negative", "PID2", "ok", _negative(document), None),
        ("c-failed", "PID1", "input_error", None, "ct.nii.gz: not a CT (modality MR)"),
    ]
    pseudonyms = {}
    with ResultsDatabase.open(db_url, out_dir) as db:
        run_id = db.start_run(root="/archive", software_version="0.1.0", options={}, host="h")
        for key, patient_id, status, doc, error in cases:
            study = StudyInput(
                key=key, paths=(f"/archive/{key}",), fingerprint="fp", patient_id=patient_id
            )
            outcome = StudyOutcome(key, status, "fp", "0.1.0", 3.0, error=error, document=doc)
            pseudonyms[key] = patient_pseudonym(patient_id, key, secret)
            db.record_outcome(run_id, study, outcome, pseudonyms[key])
    return pseudonyms


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _text(value: Any) -> str:
    """How the export writes a value: booleans 1/0, unknown empty."""
    if value is None:
        return ""
    return str(int(value)) if isinstance(value, bool) else str(value)


def test_export_csv(
    results_db_url: str | None, tmp_path: Path, all_leaks_document: dict[str, Any], cli: Cli
) -> None:
    out_dir = tmp_path / "out"
    pseudonyms = _fill(results_db_url, out_dir, all_leaks_document)
    db_args = [] if results_db_url is None else ["--db", results_db_url]
    result = cli("export", out_dir, "--csv", *db_args)
    assert result.code == 0, result.err
    folder = out_dir / "export"
    assert sorted(p.name for p in folder.iterdir()) == ["findings.csv", "studies.csv"]

    # One row per finding, every contract field, with the study and the patient's pseudonym.
    rows = _read(folder / "findings.csv")
    negative = _negative(all_leaks_document)
    expected = [("a-leaks", f) for f in all_leaks_document["findings"]]
    expected += [("b-negative", f) for f in negative["findings"]]
    assert len(rows) == len(expected) > len(all_leaks_document["findings"])
    for row, (key, finding) in zip(rows, expected, strict=True):
        assert (row["study_key"], row["patient_pseudonym"]) == (key, pseudonyms[key])
        assert row["finding_id"] == str(finding["id"])
        assert [float(row[f"centroid_{a}_mm"]) for a in "xyz"] == finding["centroid_lps_mm"]
        assert [float(row[f"bbox_max_{a}_mm"]) for a in "xyz"] == finding["bbox_lps_mm"][1]
        for name, value in finding.items():
            if name not in ("id", "centroid_lps_mm", "bbox_lps_mm"):
                assert row[name] == _text(value), name

    # One row per study: status, error and the summary; a failed study has an empty summary.
    studies = {row["study_key"]: row for row in _read(folder / "studies.csv")}
    assert list(studies) == ["a-leaks", "b-negative", "c-failed"]
    assert studies["c-failed"]["patient_pseudonym"] == studies["a-leaks"]["patient_pseudonym"]
    failed = studies["c-failed"]
    assert (failed["status"], failed["error"]) == (
        "input_error",
        "ct.nii.gz: not a CT (modality MR)",
    )
    assert failed["leak_present"] == failed["pce_count"] == failed["leaks_disc"] == ""
    summary = all_leaks_document["summary"]
    leaks = studies["a-leaks"]
    assert leaks["status"] == "ok" and leaks["error"] == ""
    for category in LEAK_CATEGORIES:
        assert leaks[f"leaks_{category}"] == str(summary["leaks"].get(category, 0))
        assert studies["b-negative"][f"leaks_{category}"] == "0"
    for part in ("ivc", "right_heart", "pce"):
        for name, value in summary[part].items():
            assert leaks[f"{part}_{name}"] == _text(value), (part, name)
    levels = [t["level"] for t in summary["treated_levels"]]
    assert leaks["treated_levels"] == ";".join(levels)
    assert studies["b-negative"]["treated_levels"] == ";".join(["?", *levels[1:]])
    assert leaks["treated_level_count"] == str(len(levels))
    volume = sum(t["cement_volume_ml"] for t in summary["treated_levels"])
    assert float(leaks["cement_volume_ml"]) == pytest.approx(volume)
    assert (leaks["leak_present"], studies["b-negative"]["leak_present"]) == ("1", "0")


def test_export_without_database(tmp_path: Path, cli: Cli) -> None:
    """Exit 2 and one line; nothing created (no empty database, no export folder)."""
    (tmp_path / "out").mkdir()
    for folder in (tmp_path / "out", tmp_path / "missing"):
        result = cli("export", folder, "--csv")
        assert result.code == 2
        assert (
            result.err.count("\n") == 1
            and DEFAULT_DB_FILE in result.err
            and str(folder) in result.err
        )
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "missing").exists()
    assert cli("export", tmp_path / "out").code == 2  # no format chosen


def test_export_is_atomic(
    tmp_path: Path, all_leaks_document: dict[str, Any], cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export failing midway (in the second table) leaves both previous tables as they were
    and no temporary file."""
    _fill(None, tmp_path, all_leaks_document)
    assert cli("export", tmp_path, "--csv").code == 0
    folder = tmp_path / "export"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    original = export._cell

    def fails_in_studies_table(value: Any) -> Any:
        if value == "c-failed":  # a study key without findings: studies.csv only
            raise OSError("disk full")
        return original(value)

    monkeypatch.setattr(export, "_cell", fails_in_studies_table)
    result = cli("export", tmp_path, "--csv")
    assert result.code == 1 and "disk full" in result.err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not any(name.startswith(".") for name in before)
