"""Benchmark ``cementscan info`` (loading and checking) on every shared volume.

Run: .venv/bin/python benchmarks/bench_info.py [--runs N]
"""

from __future__ import annotations

import argparse

from timing import SHARED_DATA, time_command

INPUTS = (
    "abdomen-native-3mm/ct.nii.gz",
    "lumbar-crop/ct.nii.gz",
    "mediastinum-cta-crop/ct.nii.gz",
    "chest-cta/ct.nii.gz",
    "upper-abdomen-dicom-j2k/dicom",
    "abdomen-portal-dicom/dicom",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"cementscan info --json, {args.runs} runs each, fresh process per run")
    for relative in INPUTS:
        timing = time_command(
            f"info {relative}", ["info", "--json", str(SHARED_DATA / relative)], args.runs
        )
        print(timing.line(), flush=True)


if __name__ == "__main__":
    main()
