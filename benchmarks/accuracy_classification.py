"""Accuracy of the classify and summary stages on seeded random phantoms.

For each spec: truth-derived candidates (connected components of the truth voxels, so detection
errors do not count) are classified with the phantom's own anatomy (truth anatomy: isolates
classification) and, with --classical, with cementscan's classical anatomy; with --detected the
detector's candidates too, with truth anatomy and (with --classical) with classical anatomy: the
whole pipeline as `cementscan analyze` runs it. Prints
per-object category / side / shape accuracy and field-by-field summary agreement, separately
for the tuning seeds and for the HELD-OUT seeds, which were fixed here before any tuning and
must never be used to tune.

Run: /work/venv/bin/python benchmarks/accuracy_classification.py [--classical] [--detected]
     [--seeds N] [--timing]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers_classify import match_objects, random_spec, truth_anatomy, truth_candidates

from cementscan.anatomy.model import Anatomy
from cementscan.classify import classify_candidates
from cementscan.findings.model import Finding
from cementscan.summary import series_coverage, summarise
from cementscan.synth import make_phantom
from cementscan.synth.phantom import Phantom

TUNING_SEEDS = tuple(range(100, 120))
# Fixed before tuning (DESIGN.md §7): never look at these while changing the classifier.
HELD_OUT_SEEDS = (7001, 7013, 7027, 7042, 7058, 7069, 7083, 7097)
SUMMARY_FIELDS = (
    "treated_levels", "leak_present", "leaks", "ivc.present", "ivc.cranial_extent_level",
    "ivc.caudal_extent_level", "ivc.extends_beyond_fov", "right_heart.present", "pce.present",
    "pce.count", "pce.laterality", "pce.predominance", "pce.zone_predominance",
    "pce.most_proximal",
)  # fmt: skip


def _anatomies(phantom: Phantom, mode: str) -> list[Anatomy | None]:
    if mode == "truth":
        return [truth_anatomy(phantom, n) for n in range(len(phantom.series))]
    if mode == "none":
        return [None] * len(phantom.series)
    from cementscan.anatomy import compute_anatomy

    return [compute_anatomy(s.ct) for s in phantom.series]


def _candidates(phantom: Phantom, index: int, anatomy: Anatomy | None, detected: bool) -> Any:
    if not detected:
        return truth_candidates(phantom.series[index])
    from cementscan.cement import find_cement

    return find_cement(phantom.series[index].ct, anatomy)


def evaluate(phantom: Phantom, mode: str, detected: bool = False) -> dict[str, Any]:
    """Per-object matches and summary agreement for one phantom."""
    anatomies = _anatomies(phantom, mode)
    findings: list[Finding] = []
    coverage = []
    objects = {o.id: o for o in phantom.objects}
    tally: Counter[str] = Counter()
    confusion: Counter[tuple[str, str]] = Counter()
    seconds = 0.0
    for n, series in enumerate(phantom.series):
        candidates = _candidates(phantom, n, anatomies[n], detected)
        clock = time.perf_counter()
        found, labels = classify_candidates(
            candidates, series.ct, anatomies[n], n, len(findings) + 1
        )
        seconds += time.perf_counter() - clock
        findings.extend(found)
        coverage.append(series_coverage(n, series.ct, anatomies[n]))
        by_id = {f.id: f for f in found}
        for obj_id, (fid, _) in match_objects(phantom, n, labels).items():
            obj = objects[obj_id]
            if obj.primary_series != n:
                continue
            f = by_id[fid]
            tally["objects"] += 1
            tally["category"] += f.category == obj.category
            tally["side"] += f.side == obj.side
            tally["shape"] += f.shape == obj.shape_kind
            confusion[(obj.category, f.category)] += 1
        seen = {o for o, _ in match_objects(phantom, n, labels).items()}
        tally["missed"] += sum(
            1 for o in phantom.objects if o.primary_series == n and o.id not in seen
        )
    clock = time.perf_counter()
    summary = asdict(summarise(findings, coverage))
    seconds += time.perf_counter() - clock
    agree = {name: _get(summary, name) == _get(phantom.summary, name) for name in SUMMARY_FIELDS}
    # Treated levels agree on the levels; volumes differ by the truth labels' partial voxels.
    agree["treated_levels"] = [t["level"] for t in summary["treated_levels"]] == [
        t["level"] for t in phantom.summary["treated_levels"]
    ]
    return {"tally": tally, "confusion": confusion, "agree": agree, "seconds": seconds}


def _get(data: dict[str, Any], name: str) -> Any:
    for part in name.split("."):
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def report(label: str, seeds: tuple[int, ...], mode: str, detected: bool) -> None:
    total: Counter[str] = Counter()
    confusion: Counter[tuple[str, str]] = Counter()
    agree: Counter[str] = Counter()
    exact = 0
    seconds = []
    for seed in seeds:
        phantom = make_phantom(random_spec(seed))
        result = evaluate(phantom, mode, detected)
        total.update(result["tally"])
        confusion.update(result["confusion"])
        for name, ok in result["agree"].items():
            agree[name] += ok
        exact += all(result["agree"].values())
        seconds.append(result["seconds"])
        bad = [k for k, ok in result["agree"].items() if not ok]
        print(f"  seed {seed}: {result['tally']['category']}/{result['tally']['objects']} "
              f"categories right; summary disagrees on {bad or 'nothing'}")  # fmt: skip
    n = max(total["objects"], 1)
    print(f"{label} ({len(seeds)} specs, anatomy={mode}, candidates="
          f"{'detected' if detected else 'truth'}):")  # fmt: skip
    print(f"  category accuracy {total['category'] / n:.3f}  side {total['side'] / n:.3f}  "
          f"shape {total['shape'] / n:.3f}  ({total['objects']} objects, {total['missed']} "
          f"without a finding)")  # fmt: skip
    print(f"  summary: {exact}/{len(seeds)} studies agree on every field; per field:")
    for name in SUMMARY_FIELDS:
        print(f"    {name:28s} {agree[name]}/{len(seeds)}")
    wrong = {k: v for k, v in confusion.items() if k[0] != k[1]}
    if wrong:
        print("  confusions (truth -> found: count):", dict(sorted(wrong.items())))
    print(f"  classify+summary time per study: median {np.median(seconds):.3f} s")


def timing() -> None:
    """classify + summary on a 512x512x300 CT with 20 components (truth anatomy grid sized)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_classify import large_study

    candidates, volume, anatomy = large_study()
    clock = time.perf_counter()
    found, _ = classify_candidates(candidates, volume, anatomy, 0, 1)
    summarise(found, [series_coverage(0, volume, anatomy)])
    print(
        f"512x512x300, {len(found)} findings: classify+summary {time.perf_counter() - clock:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classical", action="store_true", help="also with classical anatomy")
    parser.add_argument("--detected", action="store_true", help="also with detected candidates")
    parser.add_argument("--seeds", type=int, default=len(TUNING_SEEDS))
    parser.add_argument("--timing", action="store_true", help="time a 512x512x300 study")
    args = parser.parse_args()
    tuning = TUNING_SEEDS[: args.seeds]
    modes = ["truth", "none"] + (["classical"] if args.classical else [])
    for mode in modes:
        report("TUNING", tuning, mode, False)
        report("HELD-OUT", HELD_OUT_SEEDS, mode, False)
    if args.detected:
        # With classical anatomy too: the whole pipeline as `cementscan analyze` runs it.
        for mode in ["truth"] + (["classical"] if args.classical else []):
            report("TUNING", tuning, mode, True)
            report("HELD-OUT", HELD_OUT_SEEDS, mode, True)
    if args.timing:
        timing()


if __name__ == "__main__":
    main()
