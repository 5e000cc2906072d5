"""Benchmark report generation on the reference case beside the analysis time: `analyze` with
findings only, then `report` with the default formats (HTML, FHIR, DICOM SEG/SR/SC) and with PDF.

Run: .venv/bin/python benchmarks/bench_report.py [--runs N] [--pixel-mm X]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import CEMENTSCAN, time_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pixel-mm", type=float, default=0.78125, help="demo resolution")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [*CEMENTSCAN, "phantom", "--out", str(root / "ph"), "--preset", "reference-case",
             "--slice-mm", "3", "--pixel-mm", str(args.pixel_mm), "--dicom", "--no-png"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        study = str(root / "ph" / "dicom")
        out = str(root / "out")
        print(f"reference case (2 DICOM series, {args.pixel_mm} mm pixels, 3 mm slices), "
              f"{args.runs} runs each, fresh process per run")  # fmt: skip
        rows = [
            time_command("analyze (findings.json + labels only)",
                         ["analyze", study, "--out", out, "--asymptomatic", "--formats", "json"],
                         args.runs),
            time_command("report, default formats (HTML, FHIR, SEG/SR/SC)",
                         ["report", out, "--input", study, "--asymptomatic"], args.runs),
            time_command("report, default formats + PDF",
                         ["report", out, "--input", study, "--asymptomatic", "--formats", "+pdf"],
                         args.runs),
        ]  # fmt: skip
        for row in rows:
            print(row.line(), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
