"""``cementscan batch``: analyse every study under a folder, resumably, into a results database."""

from __future__ import annotations

import argparse
from pathlib import Path

from cementscan.report.formats import ALWAYS, FORMATS, parse_formats


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="analyse every study under a folder (resumable; locally or on a Dask cluster)",
        description="Find the studies under ROOT (DICOM folders grouped by study; NIfTI, NRRD and "
        "MetaImage files), analyse each into OUTDIR/studies/ and record the outcomes in a "
        "results database. Studies already done with the same input and software are skipped, "
        "so an interrupted batch is resumed by running it again. A study that fails is "
        "recorded with its error and the batch goes on (exit code 0); studies that timed out, "
        "crashed or hit an internal error are tried again by the next run.",
    )
    parser.add_argument("root", metavar="ROOT", type=Path, help="folder holding the studies")
    parser.add_argument("--out", required=True, type=Path, metavar="OUTDIR", help="output folder")
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="studies analysed at once on this machine (default: the cores, fewer if memory "
        "cannot hold that many studies at ~3 GB each)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on an existing Dask distributed scheduler (tcp://host:port); ROOT and OUTDIR "
        "must be at the same paths on its workers",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="results database: sqlite:///FILE or postgresql://USER@HOST/DB "
        "(default: OUTDIR/cementscan.sqlite)",
    )
    parser.add_argument(
        "--symptoms-csv",
        type=Path,
        metavar="FILE",
        help="CSV with a study column (study, study_uid or patient_id) and a 'symptoms' column "
        "(as --symptoms of analyze; 'asymptomatic' for none, blank for unknown)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop a study that runs longer and record it as timed out (default: no limit)",
    )
    parser.add_argument(
        "--formats",
        metavar="LIST",
        help=f"outputs per study: comma-separated from {', '.join(FORMATS)}; default "
        f"{','.join(ALWAYS)} (reports take ~10 s a study; '+pdf' means analyze's defaults + PDF)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (one line per failure only)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cementscan.cohort.batch import BATCH_DEFAULT_FORMATS, BatchConfig, run_batch

    config = BatchConfig(
        root=args.root,
        out_dir=args.out,
        workers=args.workers,
        cluster=args.cluster,
        db_url=args.db,
        symptoms_csv=args.symptoms_csv,
        timeout_s=args.timeout,
        formats=parse_formats(args.formats) if args.formats else BATCH_DEFAULT_FORMATS,
        progress=False if args.no_progress else None,
    )
    run_batch(config)
    return 0
