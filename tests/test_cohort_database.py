"""The results database on SQLite and on a real PostgreSQL server: round trip, replacement,
transactional writes, pseudonyms, migrations and bad URLs."""

from __future__ import annotations

import copy
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cementscan.cohort import database
from cementscan.cohort.database import DEFAULT_DB_FILE, ResultsDatabase
from cementscan.cohort.pseudonym import SECRET_FILE, load_or_create_secret, patient_pseudonym
from cementscan.cohort.records import STATUSES, StudyInput, StudyOutcome
from cementscan.cohort.schema import Base, FindingRow, Patient, Run, Study, SummaryRow
from cementscan.errors import InputError

VERSION = "0.1.0"
ERRORS = {
    "input_error": "ct.nii.gz: not a CT (modality MR)",
    "internal_error": "ValueError: cannot reshape array",
    "timeout": "exceeded --timeout 600 s",
    "crashed": "worker process died (signal 9)",
}


def _study(key: str, patient_id: str = "", hint: str = "") -> StudyInput:
    return StudyInput(
        key=key,
        paths=(f"/archive/{key}/ct.nii.gz",),
        fingerprint=f"fp-{key}",
        patient_id=patient_id,
        patient_hint=hint or key,
        study_uid=f"1.2.3.{len(key)}",
    )


def _outcome(
    study: StudyInput, status: str, document: dict[str, Any] | None, fingerprint: str = ""
) -> StudyOutcome:
    return StudyOutcome(
        key=study.key,
        status=status,
        fingerprint=fingerprint or study.fingerprint,
        software_version=VERSION,
        duration_s=12.5,
        error=ERRORS.get(status),
        output_dir=f"/out/{study.key}" if status == "ok" else None,
        host="node-1",
        document=document if status == "ok" else None,
    )


def _record(
    db: ResultsDatabase, run_id: int, study: StudyInput, outcome: StudyOutcome, secret: bytes
) -> None:
    pseudonym = patient_pseudonym(study.patient_id, study.patient_hint, secret)
    db.record_outcome(run_id, study, outcome, pseudonym)


def _finding_from_row(row: FindingRow) -> dict[str, Any]:
    """The findings.json finding a row stands for (inverse of the database's mapping)."""
    fields = {c.name: getattr(row, c.name) for c in FindingRow.__table__.columns}
    for name in ("id", "study_id"):
        fields.pop(name)
    finding = {"id": fields.pop("finding_id")}
    finding["centroid_lps_mm"] = [fields.pop(f"centroid_{a}_mm") for a in "xyz"]
    finding["bbox_lps_mm"] = [
        [fields.pop(f"bbox_{m}_{a}_mm") for a in "xyz"] for m in ("min", "max")
    ]
    return {**finding, **fields}


def _rows(db: ResultsDatabase, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The study's findings (as findings.json has them) and its summary rows (as dicts)."""
    with Session(db.engine) as session:
        study_id = session.scalars(select(Study.id).where(Study.key == key)).one()
        findings = session.scalars(
            select(FindingRow)
            .where(FindingRow.study_id == study_id)
            .order_by(FindingRow.finding_id)
        ).all()
        summaries = session.scalars(select(SummaryRow).where(SummaryRow.study_id == study_id)).all()
        columns = [c.name for c in SummaryRow.__table__.columns]
        return (
            [_finding_from_row(f) for f in findings],
            [{name: getattr(row, name) for name in columns} for row in summaries],
        )


def _count(db: ResultsDatabase, table: type[Base]) -> int:
    with Session(db.engine) as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_round_trip(
    results_db_url: str | None, tmp_path: Path, all_leaks_document: dict[str, Any]
) -> None:
    """Outcomes of every status are read back as written; pseudonyms are stable across opens."""
    document = json.loads(json.dumps(all_leaks_document))  # what any JSON store gives back
    assert document["findings"] and document["summary"]["pce"]["count"] > 0
    out_dir = tmp_path / "out"
    studies = {status: _study(f"s{n}-{status}", f"PID{n}") for n, status in enumerate(STATUSES)}
    blank = _study("s9-blank-id", "  ", hint="DOE^JANE 19500101")

    db = ResultsDatabase.open(results_db_url, out_dir)
    secret = load_or_create_secret(out_dir)
    run_id = db.start_run(
        root="/archive", software_version=VERSION, options={"workers": 2}, host="node-1"
    )
    for status, study in studies.items():
        _record(db, run_id, study, _outcome(study, status, document), secret)
    _record(db, run_id, blank, _outcome(blank, "ok", document), secret)
    db.finish_run(run_id, counts={"ok": 2, "failed": 4}, batch_s=99.5)
    db.close()

    # Reopened (the schema is already current): a second study of patient PID0 joins its pseudonym.
    db = ResultsDatabase.open(results_db_url, out_dir)
    secret_again = load_or_create_secret(out_dir)
    assert secret_again == secret
    second = _study("s0-second-visit", "PID0")
    run2 = db.start_run(root="/archive", software_version=VERSION, options={}, host="node-2")
    _record(db, run2, second, _outcome(second, "ok", document), secret_again)

    all_studies = [*studies.values(), blank, second]
    expected = {s.key: (s.fingerprint, VERSION, status) for status, s in studies.items()}
    expected |= {s.key: (s.fingerprint, VERSION, "ok") for s in (blank, second)}
    assert db.study_states() == expected
    records = {r.key: r for r in db.load_cohort()}
    assert list(records) == sorted(s.key for s in all_studies)
    for status, study in studies.items():
        record = records[study.key]
        assert (record.status, record.error) == (status, ERRORS.get(status))
        assert record.document == (document if status == "ok" else None)
        assert record.extra["input_paths"] == list(study.paths)
        assert record.extra["study_uid"] == study.study_uid
        assert record.extra["analysed_at"].tzinfo is not None
        assert record.extra["run_id"] == run_id

    # Pseudonyms: one per patient, stable across opens; a blank PatientID falls back to the hint.
    assert records["s0-second-visit"].patient_pseudonym == records["s0-ok"].patient_pseudonym
    pseudonyms = {r.patient_pseudonym for r in records.values()}
    assert len(pseudonyms) == len(studies) + 1 == _count(db, Patient)
    assert all(re.fullmatch(r"P-[0-9a-f]{12}", p) for p in pseudonyms)
    assert records[blank.key].patient_pseudonym == patient_pseudonym(
        "", "DOE^JANE 19500101", secret
    )
    assert "PID0" not in json.dumps([r.patient_pseudonym for r in records.values()])

    # Every contract field of every finding, and the summary, are in their rows.
    findings, summaries = _rows(db, "s0-ok")
    assert findings == document["findings"]
    (summary_row,) = summaries
    summary = document["summary"]
    assert summary_row["leak_present"] == summary["leak_present"]
    assert summary_row["leaks"] == summary["leaks"]
    assert summary_row["treated_level_count"] == len(summary["treated_levels"])
    assert summary_row["cement_volume_ml"] == pytest.approx(
        sum(t["cement_volume_ml"] for t in summary["treated_levels"])
    )
    for part in ("ivc", "right_heart", "pce"):
        for name, value in summary[part].items():
            assert summary_row[f"{part}_{name}"] == value, (part, name)
    assert summary_row["management_suggestion"] == document["management"]["suggestion"]
    for status in STATUSES[1:]:
        assert _rows(db, studies[status].key) == ([], [])

    with Session(db.engine) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.finished_at is not None
        assert (run.counts, run.batch_s, run.options) == (
            {"ok": 2, "failed": 4},
            99.5,
            {"workers": 2},
        )
        assert run.finished_at >= run.started_at
    db.close()


def test_rerecording_replaces_rows(
    results_db_url: str | None, tmp_path: Path, all_leaks_document: dict[str, Any]
) -> None:
    """A study recorded again has its new findings and summary only, never both sets."""
    smaller = copy.deepcopy(all_leaks_document)
    smaller["findings"] = smaller["findings"][:2]
    smaller["summary"]["pce"]["count"] = 0
    study = _study("a", "PID1")
    secret = load_or_create_secret(tmp_path)
    with ResultsDatabase.open(results_db_url, tmp_path) as db:
        run1 = db.start_run(root="/r", software_version=VERSION, options={}, host="h")
        _record(db, run1, study, _outcome(study, "ok", all_leaks_document), secret)
        assert _count(db, FindingRow) == len(all_leaks_document["findings"])

        run2 = db.start_run(root="/r", software_version=VERSION, options={}, host="h")
        _record(db, run2, study, _outcome(study, "ok", smaller, fingerprint="fp-changed"), secret)
        findings, (summary,) = _rows(db, "a")
        assert findings == smaller["findings"]
        assert summary["pce_count"] == 0
        assert (_count(db, Study), _count(db, FindingRow), _count(db, SummaryRow)) == (1, 2, 1)
        assert db.study_states() == {"a": ("fp-changed", VERSION, "ok")}
        assert db.load_cohort()[0].extra["run_id"] == run2

        # Now failing: its findings and summary go, its error stays.
        _record(db, run2, study, _outcome(study, "crashed", None), secret)
        assert _rows(db, "a") == ([], [])
        (record,) = db.load_cohort()
        assert (record.status, record.error, record.document) == (
            "crashed",
            ERRORS["crashed"],
            None,
        )


def test_failed_write_changes_nothing(
    results_db_url: str | None,
    tmp_path: Path,
    all_leaks_document: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A study's rows appear complete or not at all: an insert failing midway rolls back the
    study row, the deletion of its old findings and a new patient."""
    secret = load_or_create_secret(tmp_path)
    study = _study("a", "PID1")
    with ResultsDatabase.open(results_db_url, tmp_path) as db:
        run_id = db.start_run(root="/r", software_version=VERSION, options={}, host="h")
        _record(db, run_id, study, _outcome(study, "ok", all_leaks_document), secret)
        before = (db.study_states(), db.load_cohort(), _rows(db, "a"), _count(db, Patient))

        make_row = database._finding_row
        calls = []

        def third_row_breaks(study_id: int, finding: dict[str, Any]) -> FindingRow:
            calls.append(finding["id"])
            row = make_row(study_id, finding)
            if len(calls) == 3:
                row.category = None  # type: ignore[assignment]  # NOT NULL: the insert fails
            return row

        monkeypatch.setattr(database, "_finding_row", third_row_breaks)
        for key, patient in (("a", "PID2"), ("new-study", "PID3")):
            moved = _study(key, patient)
            outcome = _outcome(moved, "ok", all_leaks_document, fingerprint="fp-new")
            calls.clear()
            with pytest.raises(IntegrityError):
                _record(db, run_id, moved, outcome, secret)
            assert len(calls) == len(all_leaks_document["findings"]) > 3
        assert (db.study_states(), db.load_cohort(), _rows(db, "a"), _count(db, Patient)) == before


def test_migrations_match_models(results_db_url: str | None, tmp_path: Path) -> None:
    """The shipped migration creates exactly the tables the models describe, on both backends."""
    with ResultsDatabase.open(results_db_url, tmp_path) as db, db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert differences == []
    assert version == "0001"


def test_pseudonym_secret(tmp_path: Path) -> None:
    """One key per output folder, private, reused; another folder's key gives other pseudonyms."""
    secret = load_or_create_secret(tmp_path / "a")
    assert load_or_create_secret(tmp_path / "a") == secret and len(secret) == 32
    assert stat.S_IMODE((tmp_path / "a" / SECRET_FILE).stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "a").iterdir()] == [SECRET_FILE]  # no temporary left
    other = load_or_create_secret(tmp_path / "b")
    assert patient_pseudonym("PID1", "", secret) != patient_pseudonym("PID1", "", other)
    assert patient_pseudonym("PID1", "x", secret) == patient_pseudonym(" PID1 ", "y", secret)
    assert patient_pseudonym("PID1", "", secret) != patient_pseudonym("PID2", "", secret)
    # A hint is not mistaken for a PatientID spelling the same text.
    assert patient_pseudonym("", "PID1", secret) != patient_pseudonym("PID1", "", secret)
    (tmp_path / "a" / SECRET_FILE).write_text("not hex\n")
    with pytest.raises(InputError, match="damaged pseudonym key"):
        load_or_create_secret(tmp_path / "a")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("mysql://user@host/db", "unsupported database 'mysql'"),
        ("sqlite://", "in-memory"),
        ("postgresql://postgres:secret@127.0.0.1:1/none", "cannot open the results database"),
    ],
)
def test_bad_url_is_an_input_error(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as raised:
        ResultsDatabase.open(url, tmp_path)
    assert "\n" not in str(raised.value) and "secret" not in str(raised.value)


def test_unreadable_database_is_an_input_error(tmp_path: Path) -> None:
    """Not an SQLite file, a schema from a newer version, a folder that cannot be made."""
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / DEFAULT_DB_FILE).write_bytes(b"\x00not sqlite" * 200)
    with pytest.raises(InputError, match="cannot open the results database"):
        ResultsDatabase.open(None, tmp_path / "garbage")

    with ResultsDatabase.open(None, tmp_path / "newer") as db, db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(InputError, match="newer version"):
        ResultsDatabase.open(None, tmp_path / "newer")

    (tmp_path / "a-file").write_text("")
    with pytest.raises(InputError, match="cannot create the folder"):
        ResultsDatabase.open(None, tmp_path / "a-file")
