"""Times `phantom` (make + write) on a 3 mm test-size case and a full-size 512x512x~300 case.

Each case runs in a fresh subprocess so that its peak RSS (resource.getrusage) is its own;
prints the median wall time of several runs and the peak RSS.

    python benchmarks/bench_phantom.py [--runs N] [--only small|full]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CASES = {
    # name: (preset, overrides) -- the test-size case of tests/test_phantom.py
    "small": ("reference-case", {"slice_mm": 3.0, "pixel_mm": 2.0, "noise_hu": 10.0}),
    # 512 x 512 in-plane (0.78 mm), whole torso at 2.2 mm slices -> 512 x 512 x ~300
    "full": ("negative", {"slice_mm": 2.2, "pixel_mm": 0.78125}),
}

_CHILD = """
import json, resource, sys, tempfile, time
from cementscan.synth import make_phantom, preset_spec, write_phantom
preset, overrides = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
phantom = make_phantom(preset_spec(preset, seed=0, **overrides))
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    write_phantom(phantom, out, png=True)
t2 = time.perf_counter()
shapes = [list(s.ct.shape) for s in phantom.series]
rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
print(json.dumps({"make_s": t1 - t0, "write_s": t2 - t1, "shapes": shapes, "rss_gb": rss_gb}))
"""


def run_case(name: str, runs: int) -> dict[str, object]:
    preset, overrides = CASES[name]
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory():
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, preset, json.dumps(overrides)],
                check=True,
                capture_output=True,
                text=True,
            )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    total = [r["make_s"] + r["write_s"] for r in results]
    return {
        "case": name,
        "preset": preset,
        "shapes": results[0]["shapes"],
        "median_total_s": round(statistics.median(total), 2),
        "median_make_s": round(statistics.median(r["make_s"] for r in results), 2),
        "median_write_s": round(statistics.median(r["write_s"] for r in results), 2),
        "peak_rss_gb": round(max(r["rss_gb"] for r in results), 2),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=sorted(CASES), default=None)
    args = parser.parse_args()
    for name in [args.only] if args.only else list(CASES):
        r = run_case(name, args.runs)
        print(
            f"{r['case']:6s} {r['preset']:15s} shapes={r['shapes']} median {r['median_total_s']} s "
            f"(make {r['median_make_s']} s, write {r['median_write_s']} s) "
            f"peak RSS {r['peak_rss_gb']} GB over {r['runs']} runs"
        )


if __name__ == "__main__":
    main()
