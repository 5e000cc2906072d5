"""``cementscan demo``: the reference-case phantom through ``analyze``, on no data of the user's."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="make the reference-case phantom, analyse it and print where the results are",
    )
    parser.add_argument("--out", default="cementscan-demo", metavar="DIR", help="output folder")
    parser.add_argument("--slice-mm", type=float, default=3.0, help="phantom slice thickness (mm)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that other commands start without the phantom generator's imports.
    from cementscan.pipeline import AnalysisOptions, analyze, write_outputs
    from cementscan.synth import make_phantom, preset_spec, write_phantom

    out = Path(args.out)
    phantom_dir = out / "phantom"
    analysis_dir = out / "analysis"
    phantom_dir.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(preset_spec("reference-case", seed=0, slice_mm=args.slice_mm))
    written = write_phantom(phantom, phantom_dir, png=True)
    cts = sorted(p for p in written if p.name.startswith("ct") and p.name.endswith(".nii.gz"))
    print(f"phantom (reference case, truth in {phantom_dir / 'truth.json'}):")
    for path in cts:
        print(f"  {path}")
    result = analyze(cts, AnalysisOptions(symptoms=()))
    outputs = write_outputs(result, analysis_dir)
    print(f"analysis: {len(result.document.findings)} finding(s)")
    for path in outputs:
        print(f"  {path}")
    for warning in result.document.warnings:
        print(f"warning: {warning}")
    print(f"results are in {analysis_dir.resolve()}")
    return 0
