"""CSV tables of the results database for statistics software: one row per finding, one per study."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cementscan.atomic import staged_folder
from cementscan.cohort.database import ResultsDatabase
from cementscan.cohort.schema import FindingRow, Patient, Study, SummaryRow
from cementscan.findings.vocabulary import LEAK_CATEGORIES

EXPORT_DIR = "export"
FINDINGS_CSV = "findings.csv"
STUDIES_CSV = "studies.csv"
UNKNOWN_LEVEL = "?"  # a treated level whose name the anatomy could not tell

# Every finding column except the database's own keys, in table order.
FINDING_COLUMNS = tuple(
    c.name for c in FindingRow.__table__.columns if c.name not in ("id", "study_id")
)
STUDY_COLUMNS = (
    "status",
    "error",
    "study_uid",
    "software_version",
    "analysed_at",
    "duration_s",
    "run_id",
)
# Summary columns; "leaks" is spread over one count column per category (leaks_<category>) and
# "treated_levels" is written as its level names joined by ";".
SUMMARY_COLUMNS = tuple(c.name for c in SummaryRow.__table__.columns if c.name != "study_id")


def export_csv(db: ResultsDatabase, out_dir: Path) -> dict[Path, int]:
    """Write OUTDIR/export/findings.csv and studies.csv; returns the rows written per file.

    Both are written in a staging folder and renamed into place when complete, so a failed
    export leaves the previous tables. Booleans are 1/0 and unknown values empty, as
    statistics software reads them.
    """
    folder = Path(out_dir) / EXPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tables = {FINDINGS_CSV: _findings_table(db), STUDIES_CSV: _studies_table(db)}
    counts = {}
    with staged_folder(folder) as staging:
        for name, (header, rows) in tables.items():
            counts[folder / name] = _write_csv(staging / name, header, rows)
    return counts


def _findings_table(db: ResultsDatabase) -> tuple[list[str], list[list[Any]]]:
    columns = [FindingRow.__table__.c[name] for name in FINDING_COLUMNS]
    query = (
        select(Study.key, Patient.pseudonym, *columns)
        .join(Study, FindingRow.study_id == Study.id)
        .join(Patient, Study.patient_id == Patient.id)
        .order_by(Study.key, FindingRow.finding_id)
    )
    with db.engine.connect() as connection:
        rows = [list(row) for row in connection.execute(query)]
    return ["study_key", "patient_pseudonym", *FINDING_COLUMNS], rows


def _studies_table(db: ResultsDatabase) -> tuple[list[str], list[list[Any]]]:
    study_columns = [Study.__table__.c[name] for name in STUDY_COLUMNS]
    summary_columns = [SummaryRow.__table__.c[name] for name in SUMMARY_COLUMNS]
    query = (
        select(Study.key, Patient.pseudonym, *study_columns, *summary_columns)
        .join(Patient, Study.patient_id == Patient.id)
        .outerjoin(SummaryRow, SummaryRow.study_id == Study.id)
        .order_by(Study.key)
    )
    with db.engine.connect() as connection:
        records = [row._asdict() for row in connection.execute(query)]
    # Categories beyond today's vocabulary (a newer findings.json) get columns too.
    extra = sorted({c for r in records for c in r["leaks"] or {}} - set(LEAK_CATEGORIES))
    leak_categories = [*LEAK_CATEGORIES, *extra]
    header = ["study_key", "patient_pseudonym", *STUDY_COLUMNS]
    for name in SUMMARY_COLUMNS:
        header += [f"leaks_{c}" for c in leak_categories] if name == "leaks" else [name]
    rows = []
    for record in records:
        analysed = record["leak_present"] is not None  # a summary row exists
        row = [record["key"], record["pseudonym"], *(record[c] for c in STUDY_COLUMNS)]
        for name in SUMMARY_COLUMNS:
            value = record[name]
            if name == "leaks":
                row += [(value or {}).get(c, 0) if analysed else None for c in leak_categories]
            elif name == "treated_levels" and analysed:
                row.append(";".join(t["level"] or UNKNOWN_LEVEL for t in value))
            else:
                row.append(value)
        rows.append(row)
    return header, rows


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
            count += 1
    return count
