"""``cementscan analyze``: the main job, one patient's study -> findings.json and label maps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cementscan.clinical import KNOWN_SYMPTOMS, parse_symptoms
from cementscan.report import DEFAULT_FORMATS, FORMATS, parse_formats

if TYPE_CHECKING:
    from cementscan.pipeline import AnalysisOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="find and place cement in one patient's CT study",
        description="Analyse one patient's study (CT files or DICOM folders) and write "
        "DIR/findings.json and DIR/cement_labels*.nii.gz.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="NIfTI/NRRD/MHA file or DICOM folder"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--series", metavar="UID", help="analyse only this DICOM series")
    parser.add_argument(
        "--anatomy",
        default="classical",
        metavar="classical|none|DIR",
        help="anatomy source: classical (default), none, or a folder of TotalSegmentator masks",
    )
    add_report_arguments(parser)
    parser.set_defaults(run=run)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Clinical input and report options, shared with ``cementscan report``."""
    symptoms = parser.add_mutually_exclusive_group()
    symptoms.add_argument(
        "--symptoms",
        metavar="LIST",
        help=f"comma-separated symptoms, from: {', '.join(KNOWN_SYMPTOMS)}",
    )
    symptoms.add_argument("--asymptomatic", action="store_true", help="the patient has no symptoms")
    parser.add_argument(
        "--formats",
        metavar="LIST",
        help=f"outputs to write: comma-separated from {', '.join(FORMATS)}; '+pdf' adds to the "
        f"defaults ({', '.join(DEFAULT_FORMATS)}; DICOM only for DICOM input)",
    )
    parser.add_argument(
        "--show-identifiers",
        action="store_true",
        help="show patient name, ID and dates in report.html/pdf (de-identified by default)",
    )


def options_from_args(args: argparse.Namespace) -> AnalysisOptions:
    from cementscan.pipeline import AnalysisOptions

    return AnalysisOptions(
        series_uid=args.series,
        anatomy=args.anatomy,
        symptoms=parse_symptoms(args.symptoms, asymptomatic=args.asymptomatic),
        formats=parse_formats(args.formats),
    )


def run(args: argparse.Namespace) -> int:
    # The pipeline (anatomy, scipy.signal, ...) is imported on use: `cementscan info` stays quick.
    from cementscan.pipeline import analyze, write_outputs

    options = options_from_args(args)
    result = analyze(args.inputs, options)
    written = write_outputs(
        result, Path(args.out), options.formats, show_identifiers=args.show_identifiers
    )
    document = result.document
    print(f"{len(document.findings)} finding(s) in {len(document.inputs)} series")
    for warning in document.warnings:
        print(f"warning: {warning}")
    for path in written:
        print(f"wrote {path}")
    return 0
