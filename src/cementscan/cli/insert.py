"""`cementscan insert`: simulated cement inserted into a real CT from its reference labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from cementscan.atomic import output_folder
from cementscan.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``insert`` sub-command."""
    p = subparsers.add_parser(
        "insert",
        help="insert simulated cement into a real CT, with its ground truth",
        description="Places cement objects described by a JSON spec into a real CT, from the "
        "reference labels that come with it (not from cementscan's own anatomy), and writes "
        "DIR/ct.nii.gz, DIR/truth_labels.nii.gz and DIR/truth.json. Spec format: see "
        "cementscan.synth.insert_spec.",
    )
    p.add_argument("input", type=Path, help="CT file (NIfTI, NRRD, MetaImage) or DICOM folder")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--spec", required=True, type=Path, help="insert spec JSON")
    p.add_argument(
        "--labels",
        type=Path,
        action="append",
        default=None,
        help="reference label map (repeatable; default: labels.nii.gz, vertebrae.nii.gz, "
        "subregions.nii.gz, pulmonary_artery.nii.gz beside the input)",
    )
    p.add_argument(
        "--labels-json",
        type=Path,
        action="append",
        default=None,
        help="id -> name JSON for each --labels file, in order (default: NAME.json beside it; "
        "built in for VerSe vertebrae.nii.gz and TPTBox subregions.nii.gz)",
    )
    p.add_argument("--seed", type=int, default=None, help="overrides the spec's seed")
    p.set_defaults(run=run)


def _label_files(args: argparse.Namespace) -> list[tuple[Path, Path | None]] | None:
    if not args.labels:
        if args.labels_json:
            raise InputError("--labels-json needs --labels")
        return None
    names = list(args.labels_json or [])
    if len(names) > len(args.labels):
        raise InputError("more --labels-json than --labels files")
    out: list[tuple[Path, Path | None]] = []
    for n, path in enumerate(args.labels):
        if not path.is_file():
            raise InputError("no such label file", path=path)
        if n < len(names):
            out.append((path, names[n]))
        else:
            stem = path.name.split(".")[0]
            beside = path.parent / f"{stem}.json"
            out.append((path, beside if beside.is_file() else None))
    return out


def run(args: argparse.Namespace) -> int:
    """Insert the spec's cement into INPUT and write the outputs; print the paths written."""
    from cementscan.synth.insert import insert_cement, write_insert
    from cementscan.synth.insert_spec import InsertSpec

    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed {args.seed} must be non-negative")
    out = output_folder(args.out, create=False)
    spec = InsertSpec.from_json(args.spec)
    result = insert_cement(args.input, spec, labels=_label_files(args), seed=args.seed)
    for path in write_insert(result, out):
        print(path)
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0
