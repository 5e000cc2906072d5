"""``cementscan export``: a cohort's results database as CSV tables for statistics software."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a cohort's results as tables for statistics software (CSV)",
        description="Write OUTDIR/export/findings.csv (one row per finding) and "
        "OUTDIR/export/studies.csv (one row per study: status, error and summary) from the "
        "results database of `cementscan batch`. Patients appear by pseudonym; booleans are "
        "1/0; unknown values are empty.",
    )
    parser.add_argument(
        "out_dir", metavar="OUTDIR", type=Path, help="the output folder of `cementscan batch`"
    )
    formats = parser.add_mutually_exclusive_group(required=True)
    formats.add_argument("--csv", action="store_true", help="comma-separated tables")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="the results database when it is not OUTDIR/cementscan.sqlite, e.g. "
        "postgresql://USER@HOST:PORT/DATABASE",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: SQLAlchemy and Alembic are not needed by the other commands' start-up.
    from cementscan.cohort.database import ResultsDatabase
    from cementscan.cohort.export import export_csv

    out_dir: Path = args.out_dir
    with ResultsDatabase.open_existing(args.db, out_dir) as db:
        written = export_csv(db, out_dir)
    for path, rows in written.items():
        print(f"wrote {path} ({rows} rows)")
    return 0
