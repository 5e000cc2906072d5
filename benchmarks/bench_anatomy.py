"""Benchmark the anatomy stage (classical) on chest-cta: median wall time, peak RSS, and time per
million voxels at three sizes (z-crops of the same scan).

Run: .venv/bin/python benchmarks/bench_anatomy.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from timing import SHARED_DATA

_CHILD = """
import json, resource, sys, time
from dataclasses import replace
from cementscan.anatomy import compute_anatomy
from cementscan.io import load_volume
volume = load_volume(sys.argv[1])
slices = int(sys.argv[2])
if slices < volume.shape[2]:
    start = (volume.shape[2] - slices) // 2
    origin = volume.index_to_lps([0, 0, start])
    volume = replace(volume, hu=volume.hu[:, :, start:start + slices],
                     origin_lps_mm=tuple(float(v) for v in origin))
clock = time.perf_counter()
anatomy = compute_anatomy(volume)
seconds = time.perf_counter() - clock
print(json.dumps({"seconds": seconds, "voxels": int(volume.hu.size),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "levels": [v.level for v in anatomy.vertebrae]}))
"""


def run(path: str, slices: int, runs: int) -> dict[str, float]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, path, str(slices)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    median_s = statistics.median(r["seconds"] for r in results)
    voxels = results[0]["voxels"]
    return {
        "median_s": median_s,
        "voxels_m": voxels / 1e6,
        "s_per_mvoxel": median_s / (voxels / 1e6),
        "peak_rss_mb": max(r["rss_mb"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = str(SHARED_DATA / "chest-cta" / "ct.nii.gz")
    print(f"anatomy (classical) on chest-cta z-crops, {args.runs} runs each, load excluded")
    rows = [(slices, run(path, slices, args.runs)) for slices in (44, 88, 133)]
    for slices, r in rows:
        print(
            f"512x512x{slices:<4d} {r['voxels_m']:6.1f} Mvoxels  median {r['median_s']:6.2f} s  "
            f"{r['s_per_mvoxel']:6.3f} s/Mvoxel  peak RSS {r['peak_rss_mb']:6.0f} MB"
        )
    ratio = rows[2][1]["s_per_mvoxel"] / rows[1][1]["s_per_mvoxel"]
    print(f"time per Mvoxel, largest / middle: {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
