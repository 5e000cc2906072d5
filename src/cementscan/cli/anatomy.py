"""``cementscan anatomy``: the anatomy stage alone -> anatomy.json, labels and an overview PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from cementscan.atomic import output_folder, staged_folder
from cementscan.io import load_volume, write_labels


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "anatomy",
        help="find the anatomy alone: levels, lungs, venous route; writes anatomy.json, labels, PNG",
    )
    parser.add_argument("input", metavar="INPUT", help="NIfTI/NRRD/MHA file or DICOM folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--anatomy-masks",
        metavar="DIR",
        help="build the anatomy from TotalSegmentator masks (per-class files or one multilabel file)",
    )
    parser.add_argument("--no-png", action="store_true", help="skip the overview PNG")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cementscan.anatomy import compute_anatomy
    from cementscan.anatomy.export import anatomy_json, label_map, write_overview_png
    from cementscan.anatomy.grid import labels_to_volume
    from cementscan.findings import write_json_atomic

    volume = load_volume(args.input)
    masks = Path(args.anatomy_masks) if args.anatomy_masks else None
    anatomy = compute_anatomy(volume, masks_path=masks)
    out = output_folder(args.out)
    labels, names = label_map(anatomy)
    written: list[Path] = []
    with staged_folder(out, written) as staging:
        write_json_atomic(anatomy_json(anatomy), staging / "anatomy.json")
        write_labels(
            labels_to_volume(labels, anatomy.grid, volume),
            volume,
            staging / "anatomy_labels.nii.gz",
        )
        write_json_atomic({str(k): v for k, v in names.items()}, staging / "anatomy_labels.json")
        if not args.no_png:
            write_overview_png(anatomy, staging / "anatomy_overview.png")
    for path in written:
        print(f"wrote {path}")
    print(
        f"levels from {anatomy.level_anchor} (confidence {anatomy.level_confidence:.2f}): "
        + (", ".join(v.level or "?" for v in anatomy.vertebrae) or "none")
    )
    return 0
