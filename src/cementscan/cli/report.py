"""``cementscan report``: re-render the report formats of an analysis with new clinical inputs."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cementscan.atomic import staged_folder
from cementscan.cli.analyze import add_report_arguments
from cementscan.clinical import parse_symptoms, suggest_management
from cementscan.errors import InputError
from cementscan.findings import read_findings, summary_from_dict, write_json_atomic
from cementscan.io import CTVolume, load_study
from cementscan.report import parse_formats, write_formats


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="re-render the report formats of an analysis with new clinical inputs",
        description="Re-render DIR's report formats from its findings.json and cement labels, "
        "without re-analysing; the inputs must be the ones analysed.",
    )
    parser.add_argument("dir", metavar="DIR", help="the folder `cementscan analyze` wrote")
    parser.add_argument(
        "--input", nargs="+", required=True, metavar="INPUT", help="the input(s) analysed"
    )
    add_report_arguments(parser)
    parser.set_defaults(run=run)


def _check_same_inputs(
    data: dict[str, object], volumes: tuple[CTVolume, ...], folder: Path
) -> None:
    recorded = data["inputs"]
    assert isinstance(recorded, list)
    if len(recorded) != len(volumes):
        raise InputError(
            f"the input no longer matches the one analysed: {len(volumes)} series now, "
            f"{len(recorded)} in findings.json",
            folder,
        )
    for n, (record, volume) in enumerate(zip(recorded, volumes, strict=True)):
        same = record["shape"] == list(volume.shape) and np.allclose(
            record["spacing_mm"], volume.spacing_mm
        )
        if record.get("series_uid") and volume.source.series_uid:
            same = same and record["series_uid"] == volume.source.series_uid
        if not same:
            raise InputError(
                f"the input no longer matches the one analysed (series {n}: shape, spacing or "
                "series UID differ from findings.json)",
                folder,
            )


def _read_labels(path: Path, volume: CTVolume) -> np.ndarray:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError("cannot read the cement label map", path) from None
    labels = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    if labels.shape != volume.shape:
        raise InputError("the cement label map does not match the input's grid", path)
    return labels


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    data = read_findings(folder / "findings.json")
    volumes = load_study(args.input).volumes
    _check_same_inputs(data, volumes, folder)
    from cementscan.pipeline import label_file_names

    names = label_file_names(len(volumes))
    label_maps = [_read_labels(folder / n, v) for n, v in zip(names, volumes, strict=True)]
    symptoms = parse_symptoms(args.symptoms, asymptomatic=args.asymptomatic)
    management = suggest_management(summary_from_dict(data["summary"]), symptoms)
    data["management"] = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in asdict(management).items()
    }
    formats = [f for f in parse_formats(args.formats) if f not in ("json", "labels")]
    written: list[Path] = []
    with staged_folder(folder, written) as staging:
        write_formats(
            staging, data, label_maps, volumes, formats, show_identifiers=args.show_identifiers
        )
        write_json_atomic(data, staging / "findings.json")
    for path in written:
        print(f"wrote {path}")
    print(f"management: {management.suggestion}")
    return 0
