"""`cementscan phantom`: write a synthetic torso CT with known cement, look-alikes and truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from cementscan.atomic import output_folder
from cementscan.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``phantom`` sub-command."""
    from cementscan.synth.presets import PRESET_HELP

    presets = "; ".join(f"{name}: {text}" for name, text in PRESET_HELP.items())
    p = subparsers.add_parser(
        "phantom",
        help="write a synthetic CT phantom with cement and its ground truth",
        description=f"Synthetic torso CT with known cement and its truth. Presets — {presets}.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--preset",
        default=None,
        help="preset name, or 'help' to list them (default: reference-case)",
    )
    p.add_argument(
        "--spec", type=Path, default=None, help="phantom spec JSON (instead of a preset)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slice-mm", type=float, default=None, help="slice thickness 1-5 mm")
    p.add_argument("--pixel-mm", type=float, default=None, help="in-plane pixel size (mm)")
    p.add_argument("--noise-hu", type=float, default=None, help="noise standard deviation (HU)")
    p.add_argument("--dicom", action="store_true", help="also write DIR/dicom/ (one study)")
    p.add_argument("--no-png", action="store_true", help="skip the overview PNG(s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the phantom the arguments describe, write it, print the paths written."""
    from cementscan.synth import PRESET_HELP, PhantomSpec, make_phantom, preset_spec, write_phantom

    if args.preset == "help":
        for name, text in PRESET_HELP.items():
            print(f"{name:16s} {text}")
        return 0
    if args.slice_mm is not None and not 1.0 <= args.slice_mm <= 5.0:
        raise InputError(f"--slice-mm {args.slice_mm:g} is outside 1-5 mm")
    if args.pixel_mm is not None and not 0.3 <= args.pixel_mm <= 4.0:
        raise InputError(f"--pixel-mm {args.pixel_mm:g} is outside 0.3-4 mm")
    if args.noise_hu is not None and not 0.0 <= args.noise_hu <= 200.0:
        raise InputError(f"--noise-hu {args.noise_hu:g} is outside 0-200 HU")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed} must be non-negative")
    if args.spec is not None and args.preset is not None:
        raise InputError("give --preset or --spec, not both")
    overrides: dict[str, float] = {}
    if args.pixel_mm is not None:
        overrides["pixel_mm"] = args.pixel_mm
    if args.noise_hu is not None:
        overrides["noise_hu"] = args.noise_hu
    if args.spec is not None:
        spec = PhantomSpec.from_json(args.spec)
        data = spec.to_dict()
        data["seed"] = args.seed if args.seed else spec.seed
        if args.slice_mm is not None:
            data["slice_mm"] = args.slice_mm
            for series in data["series"]:
                series["slice_mm"] = args.slice_mm
        data.update(overrides)
        try:
            spec = PhantomSpec.from_dict(data)
        except InputError as exc:
            raise InputError(exc.problem, path=args.spec) from None
    else:
        spec = preset_spec(
            args.preset or "reference-case", seed=args.seed, slice_mm=args.slice_mm, **overrides
        )
    out = output_folder(args.out, create=False)
    phantom = make_phantom(spec)
    for path in write_phantom(phantom, out, dicom=args.dicom, png=not args.no_png):
        if path.parent.name.startswith("series_") and not path.name.endswith("_0000.dcm"):
            continue  # one line per DICOM series, not per slice
        print(path.parent if path.suffix == ".dcm" else path)
    for warning in phantom.warnings:
        print(f"warning: {warning}")
    return 0
