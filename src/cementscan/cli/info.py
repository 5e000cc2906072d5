"""``cementscan info``: what the loader sees in an input, as text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cementscan.io import load_study
from cementscan.io.describe import describe_study


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show what the loader sees: modality, geometry, HU range, series chosen and skipped",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="NIfTI/NRRD/MHA file or DICOM folder"
    )
    parser.add_argument("--series", metavar="UID", help="read only this DICOM series")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    described = describe_study(load_study(args.inputs, series_uid=args.series))
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        print(format_text(described))
    return 0


def format_text(described: dict[str, Any]) -> str:
    lines: list[str] = []
    for n, s in enumerate(described["series"]):
        uid = s["series_uid"] or "(none)"
        if s["series_uid_generated"]:
            uid += " (generated: blank in the source)"
        lines += [
            f"series {n}: {s['path']}",
            f"  format {s['format']}, modality {s['modality']}, series UID {uid}",
            f"  shape (i, j, k) {tuple(s['shape'])}, spacing {tuple(s['spacing_mm'])} mm",
            f"  orientation {s['orientation']} (axes point toward), origin {tuple(round(v, 2) for v in s['origin_lps_mm'])} mm LPS",
            f"  direction {s['direction']}",
            f"  HU {s['hu_min']} .. {s['hu_max']}",
        ]
        extras = [
            f"{label} {s[key]}"
            for key, label in (
                ("slice_thickness_mm", "slice thickness (mm)"),
                ("kvp", "kVp"),
                ("convolution_kernel", "kernel"),
                ("contrast_agent", "contrast"),
                ("manufacturer", "manufacturer"),
                ("series_description", "description"),
            )
            if s[key] is not None
        ]
        if extras:
            lines.append("  " + ", ".join(extras))
        lines += [f"  warning: {w}" for w in s["warnings"]]
    for skipped in described["skipped_series"]:
        lines.append(f"skipped {skipped['series_uid']}: {skipped['reason']}")
    return "\n".join(lines)
