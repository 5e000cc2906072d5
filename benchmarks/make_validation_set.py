"""Build the insert validation set: every committed spec in validation_specs/, inserted into its shared CT."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cementscan.errors import InputError
from cementscan.synth.insert import insert_cement, write_insert
from cementscan.synth.insert_spec import InsertSpec

HERE = Path(__file__).resolve().parent
SPECS = HERE / "validation_specs"
SPLITS = ("tuning", "held_out")
# The input inside each shared-data folder (the j2k series is a DICOM folder).
INPUTS = {
    "abdomen-native-3mm": "ct.nii.gz",
    "chest-cta": "ct.nii.gz",
    "upper-abdomen-dicom-j2k": "dicom",
    "mediastinum-cta-crop": "ct.nii.gz",
    "lumbar-crop": "ct.nii.gz",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("/tmp/cementscan-validation"))
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    p.add_argument("--split", choices=(*SPLITS, "all"), default="tuning",
                   help="which specs to build (default: tuning; held_out only for final reports)")  # fmt: skip
    args = p.parse_args(argv)
    splits = SPLITS if args.split == "all" else (args.split,)
    rows, failed = [], 0
    for split in splits:
        for spec_path in sorted((SPECS / split).glob("*/*.json")):
            volume = spec_path.parent.name
            if volume not in INPUTS:
                print(f"skip {spec_path}: unknown volume {volume}", file=sys.stderr)
                continue
            out = args.out / split / volume / spec_path.stem
            t0 = time.perf_counter()
            try:
                result = insert_cement(args.data / volume / INPUTS[volume],
                                       InsertSpec.from_json(spec_path))  # fmt: skip
                write_insert(result, out)
            except InputError as exc:
                failed += 1
                print(f"FAILED {spec_path.relative_to(SPECS)}: {exc}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - t0
            cats: dict[str, int] = {}
            for o in result.truth["objects"]:
                cats[o["category"]] = cats.get(o["category"], 0) + 1
            rows.append({"split": split, "volume": volume, "case": spec_path.stem,
                         "path": str(out), "objects": cats, "seconds": round(seconds, 1),
                         "warnings": result.warnings})  # fmt: skip
            print(f"{split:9s} {volume:24s} {spec_path.stem:38s} {seconds:5.1f} s  {cats}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{len(rows)} cases in {args.out} ({failed} failed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
