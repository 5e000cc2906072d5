"""``cementscan cohort``: the incidence report of a batch's results database."""

from __future__ import annotations

import argparse
from pathlib import Path

from cementscan.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cohort",
        help="incidence report of a batch: leak, PCE, IVC and right-heart rates, risk factors",
        description="Read the results database of `cementscan batch` and write OUTDIR/cohort/: "
        "CSV tables, plots and cohort.html. Only successfully analysed studies enter the "
        "rates; failed ones are listed.",
    )
    parser.add_argument("out_dir", metavar="OUTDIR", help="the folder `cementscan batch` wrote")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="results database URL (default: sqlite file cementscan.sqlite in OUTDIR)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    if args.db is None and not out_dir.is_dir():
        raise InputError("no such folder", out_dir)
    from cementscan.cohort.cohort_report import write_cohort_report
    from cementscan.cohort.database import ResultsDatabase
    from cementscan.cohort.stats import overview

    database = ResultsDatabase.open_existing(args.db, out_dir)
    try:
        records = database.load_cohort()
    finally:
        database.close()
    if not records:
        raise InputError("the results database holds no studies; run `cementscan batch` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    page = write_cohort_report(records, out_dir)
    counts = overview(records)
    print(
        f"{counts['ok_studies']} studies of {counts['patients']} patients entered, "
        f"{counts['failed_studies']} failed; report: {page}"
    )
    return 0
