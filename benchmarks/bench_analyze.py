"""End-to-end ``cementscan analyze`` speed (issue #4): chest-cta (512×512×133) and a 512×512×300
phantom; median wall time over fresh processes, peak RSS, and the per-stage timings that
findings.json records (median over the runs).

Target (issue #4): the 300-slice case in ≤ 10 s median on these 2-core machines, ≤ 3 GB peak RSS.

Run: .venv/bin/python benchmarks/bench_analyze.py [--runs N] [--skip-chest-cta]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from timing import CEMENTSCAN, SHARED_DATA, Timing, time_command

# The all-leaks preset over apex..pelvis at 0.78 mm pixels and 2.2 mm slices: 512×512×297.
PHANTOM_ARGS = ["--preset", "all-leaks", "--pixel-mm", "0.78125", "--slice-mm", "2.2"]


def stage_medians(findings_files: list[Path]) -> dict[str, float]:
    per_stage: dict[str, list[float]] = {}
    for path in findings_files:
        for stage, seconds in json.loads(path.read_text())["timings_s"].items():
            per_stage.setdefault(stage, []).append(float(seconds))
    return {stage: statistics.median(values) for stage, values in per_stage.items()}


def bench(label: str, inputs: list[str], out_root: Path, runs: int) -> tuple[Timing, str]:
    out = out_root / label.split()[0]
    timing = time_command(
        label, ["analyze", *inputs, "--out", str(out), "--formats", "json"], runs=runs
    )
    data = json.loads((out / "findings.json").read_text())
    shape = " + ".join("×".join(str(n) for n in record["shape"]) for record in data["inputs"])
    stages = stage_medians([out / "findings.json"])
    stage_text = ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
    return timing, f"    shape {shape}; findings {len(data['findings'])}; stages: {stage_text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-chest-cta", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [*CEMENTSCAN, "phantom", "--out", str(root / "ph"), *PHANTOM_ARGS, "--no-png"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"analyze end to end (findings.json + labels), {args.runs} fresh processes each")
        cases = [("phantom all-leaks 512x512x~300", [str(root / "ph" / "ct.nii.gz")])]
        chest = SHARED_DATA / "chest-cta" / "ct.nii.gz"
        if not args.skip_chest_cta and chest.exists():
            cases.append(("chest-cta 512x512x133", [str(chest)]))
        for label, inputs in cases:
            load_before = os.getloadavg()[0]
            timing, detail = bench(label, inputs, root, args.runs)
            print(timing.line(), flush=True)
            # Other work on these shared 2-core machines slows every figure: say how busy it was.
            load = f"machine load (1-min average) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
            print(f"{detail}\n    {load}", flush=True)


if __name__ == "__main__":
    main()
