"""Accuracy of the cement stage on seeded random phantoms: sensitivity, false candidates, FROC, reliability.

Per slice thickness (1, 2.5, 5 mm; 2 mm pixels unless --pixel-mm) and truth-object type it
prints the sensitivity and the false candidates per scan; FROC points for pulmonary emboli by
size class (sensitivity at 0.05, 0.1, 0.2 and 0.5 false candidates per scan, sweeping the
confidence threshold); and a reliability table of ``confidence`` (predicted vs observed fraction
of true candidates).

A candidate is true when it overlaps a truth object's voxels on the same grid; one candidate
may cover several truth objects (a vertebra -> vein -> IVC cast) and finds them all.

TUNING_SEEDS were used while developing the detector. HELD_OUT_SEEDS were written into this
file before any tuning and are reported separately; do not look at their results while tuning.

    python benchmarks/accuracy_detection.py [--slices 1,2.5,5] [--tuning N] [--held-out N]
        [--no-held-out] [--fresh N] [--anatomy] [--jobs 2] [--pixel-mm 2]

2 mm pixels keep the run short and are harsher than clinical CT (0.6-0.9 mm): a 3 mm embolus
covers one or two pixels. --pixel-mm 0.8 measures the same seeds at a clinical pixel size.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cementscan.errors import InputError
from cementscan.synth import PhantomSpec, make_phantom
from cementscan.synth.spec import LEAK_CATEGORIES, LUMBAR, THORACIC

# Fixed before tuning. Tuning looked only at TUNING_SEEDS (and the named presets).
TUNING_SEEDS = tuple(range(1000, 1024))
# Drawn after the detector had been tuned on TUNING_SEEDS (a check that it does not fit them):
# tuning seeds too, free to look at (--fresh N takes the first N).
FRESH_SEEDS_START = 2000
HELD_OUT_SEEDS = (
    7301, 7302, 7303, 7304, 7305, 7306, 7307, 7308, 7309, 7310, 7311, 7312,
    7313, 7314, 7315, 7316, 7317, 7318, 7319, 7320, 7321, 7322, 7323, 7324,
)  # fmt: skip
SLICES_MM = (1.0, 2.5, 5.0)
PIXEL_MM = 2.0
FROC_FP_PER_SCAN = (0.05, 0.1, 0.2, 0.5)
RELIABILITY_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0001)

LEAK_TYPES = LEAK_CATEGORIES  # the leak kinds a phantom spec can ask for
SERIES_CHOICES = (
    {"z_from_level": "apex", "z_to_level": "pelvis", "description": "CT torso"},
    {"z_from_level": "apex", "z_to_level": "L2", "description": "CT chest"},
    {"z_from_level": "T10", "z_to_level": "S1", "description": "CT lumbar spine"},
    {"z_from_level": "T4", "z_to_level": "L5", "description": "CT thoracolumbar spine"},
)


def random_spec_dict(seed: int, pixel_mm: float = PIXEL_MM) -> dict[str, Any]:
    """A random but valid phantom spec (as a dict) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    series = dict(SERIES_CHOICES[int(rng.integers(len(SERIES_CHOICES)))])
    levels = [lv for lv in (*THORACIC[4:], *LUMBAR)]
    n_levels = int(rng.integers(1, 4))
    treated = sorted(rng.choice(levels, n_levels, replace=False).tolist(), key=levels.index)
    hu_mode = rng.uniform()
    shared_hu = None if hu_mode < 0.6 else float(rng.uniform(1200, 3000))
    intravertebral = [
        {
            "level": lv,
            "volume_ml": round(float(rng.uniform(2.0, 6.5)), 2),
            "side": str(rng.choice(["right", "left", "midline"])),
            **({"hu": shared_hu} if shared_hu is not None else {}),
        }
        for lv in treated
    ]
    leaks: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(0, 4))):
        level = str(rng.choice(treated))
        options = [
            "disc",
            "epidural",
            "foraminal",
            "paravertebral_soft_tissue",
            "paravertebral_vein",
        ]
        if level.startswith("T"):
            options.append("azygos")
        category = str(rng.choice(options))
        leak: dict[str, Any] = {"category": category, "level": level}
        leak["side"] = str(rng.choice(["right", "left"])) if category != "epidural" else "midline"
        if category == "disc":
            leak["direction"] = str(rng.choice(["caudal", "cranial"]))
        if category == "paravertebral_vein" and level.startswith("L") and rng.uniform() < 0.5:
            route = ("T12", *LUMBAR)  # the cast reaches from the leaking level up to here
            leak["ivc_to_level"] = str(rng.choice(route[: route.index(level) + 1]))
        if any(
            lk["category"] == category and lk["level"] == level and lk["side"] == leak["side"]
            for lk in leaks
        ):
            continue
        leaks.append(leak)
    emboli = {
        "count": int(rng.integers(0, 9)),
        "side": str(rng.choice(["bilateral", "right", "left"])),
        "zone": str(rng.choice(["lower", "diffuse", "middle"])),
        "shape": str(rng.choice(["mixed", "linear", "nodular"])),
    }
    emboli["central"] = int(rng.integers(0, 2)) if emboli["count"] else 0
    right_heart = None
    if rng.uniform() < 0.3:
        right_heart = {
            "chamber": str(rng.choice(["right_atrium", "right_ventricle"])),
            "shape": str(rng.choice(["linear", "nodular"])),
            "length_mm": round(float(rng.uniform(6.0, 30.0)), 1),
        }
    confounders: dict[str, Any] = {
        "aortic_calcifications": int(rng.integers(0, 7)),
        "coronary_calcifications": int(rng.integers(0, 4)),
        "granulomas": int(rng.integers(0, 4)),
        "granulomas_beside_vessels": int(rng.integers(0, 3)),
        "hilar_nodes": int(rng.integers(0, 3)),
        "phleboliths": int(rng.integers(0, 4)),
        "surgical_clips": int(rng.integers(0, 3)),
        "contrast": str(rng.choice(["none", "none", "portal_venous", "arterial"])),
    }
    untreated = [lv for lv in LUMBAR if lv not in treated]
    if rng.uniform() < 0.4:
        confounders["osteophyte_levels"] = [str(rng.choice(levels))]
    if rng.uniform() < 0.3 and untreated:
        confounders["pedicle_screws"] = [
            {"level": str(rng.choice(untreated)), "augmented": bool(rng.uniform() < 0.4)}
        ]
    if rng.uniform() < 0.25 and untreated[:-1]:
        confounders["ivc_filter_level"] = str(rng.choice([lv for lv in untreated if lv != "L5"]))
    if rng.uniform() < 0.25:
        confounders["disc_calcifications"] = [str(rng.choice(levels[:-1]))]
    return {
        "seed": seed,
        "pixel_mm": pixel_mm,
        "noise_hu": round(float(rng.uniform(8.0, 22.0)), 1),
        "series": [series],
        "intravertebral": intravertebral,
        "leaks": leaks,
        "emboli": emboli,
        "right_heart": right_heart,
        "confounders": confounders,
    }


def random_spec(seed: int, slice_mm: float, pixel_mm: float = PIXEL_MM) -> PhantomSpec:
    """The random spec of ``seed`` at ``slice_mm``; invalid draws are re-drawn (seed * 7919 + n)."""
    for attempt in range(20):
        data = random_spec_dict(seed if attempt == 0 else seed * 7919 + attempt, pixel_mm)
        data["seed"] = seed
        data["slice_mm"] = slice_mm
        try:
            return PhantomSpec.from_dict(data)
        except InputError:
            continue
    raise RuntimeError(f"no valid random spec for seed {seed}")


def object_type(obj: Any) -> str:
    """Reporting type of a truth object: intravertebral, leak, ivc, right_heart, pe_<shape>_<size>."""
    if obj.category == "pulmonary_artery":
        volume_mm3 = obj.volume_ml * 1000.0
        if obj.shape_kind == "linear":
            width_mm = 2.0 * np.sqrt(volume_mm3 / (np.pi * max(obj.length_mm or 1.0, 1.0)))
            return "pe_linear_" + ("wide" if width_mm >= 3.0 else "narrow")
        diameter_mm = (6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)
        return "pe_nodular_" + ("large" if diameter_mm >= 4.0 else "small")
    if obj.category in LEAK_TYPES:
        return "leak"
    return str(obj.category)


@dataclass
class ScanResult:
    """One series of one phantom: which objects were found and each candidate's verdict."""

    name: str
    slice_mm: float
    objects: list[tuple[str, bool]] = field(default_factory=list)  # type, found
    # confidence, true, and for each candidate the embolus types it covers
    candidates: list[tuple[float, bool, tuple[str, ...]]] = field(default_factory=list)
    false_notes: list[str] = field(default_factory=list)
    missed_notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def evaluate_phantom(spec: PhantomSpec, name: str, use_anatomy: bool = False) -> list[ScanResult]:
    """Run ``find_cement`` on every series of the phantom of ``spec`` and score it."""
    from cementscan.anatomy import compute_anatomy
    from cementscan.cement import find_cement

    phantom = make_phantom(spec)
    out = []
    for series in phantom.series:
        anatomy = compute_anatomy(series.ct) if use_anatomy else None
        clock = time.perf_counter()
        result = find_cement(series.ct, anatomy)
        seconds = time.perf_counter() - clock
        scan = ScanResult(name, spec.slice_mm, seconds=seconds)
        truth = series.truth_labels
        conf = series.confounder_labels
        found_ids: set[int] = set()
        for cand in result.candidates:
            mask = result.labels == cand.label
            hit = np.unique(truth[mask])
            hit = hit[hit > 0]
            found_ids.update(int(h) for h in hit)
            types = tuple(object_type(o) for o in phantom.objects if o.id in set(hit.tolist()))
            scan.candidates.append((cand.confidence, len(hit) > 0, types))
            if len(hit) == 0:
                kinds = np.unique(conf[mask])
                what = [c.kind for c in phantom.confounders if c.id in set(kinds.tolist())]
                scan.false_notes.append(
                    f"{name} {spec.slice_mm}mm: false {what or ['nothing']} "
                    f"at {[round(v) for v in cand.centroid_lps_mm]} "
                    f"conf={cand.confidence:.2f} {_short(cand.features)}"
                )
        present = set(np.unique(truth).tolist()) - {0}
        for obj in phantom.objects:
            if obj.id not in present:
                continue
            found = obj.id in found_ids
            scan.objects.append((object_type(obj), found))
            if not found:
                scan.missed_notes.append(
                    f"{name} {spec.slice_mm}mm: missed {obj.category}/{obj.shape_kind} "
                    f"hu={obj.hu:.0f} vol={obj.volume_ml:.3f} at "
                    f"{[round(v) for v in obj.centroid_lps_mm]}"
                )
        out.append(scan)
    return out


def _short(features: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3g}" for k, v in sorted(features.items()))


def _job(args: tuple[int, float, float, bool]) -> list[ScanResult]:
    seed, slice_mm, pixel_mm, use_anatomy = args
    return evaluate_phantom(random_spec(seed, slice_mm, pixel_mm), f"seed{seed}", use_anatomy)


def run(
    seeds: Iterable[int],
    slices: Iterable[float],
    jobs: int,
    anatomy: bool,
    pixel_mm: float = PIXEL_MM,
) -> list[ScanResult]:
    tasks = [(s, sl, pixel_mm, anatomy) for sl in slices for s in seeds]
    results: list[ScanResult] = []
    if jobs <= 1:
        for task in tasks:
            results.extend(_job(task))
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for part in pool.map(_job, tasks):
                results.extend(part)
    return results


def sensitivity_table(results: list[ScanResult]) -> list[str]:
    lines = [f"{'slice':>6} {'type':22} {'found':>7} {'sens':>6}"]
    by_slice: dict[float, list[ScanResult]] = defaultdict(list)
    for r in results:
        by_slice[r.slice_mm].append(r)
    for slice_mm, scans in sorted(by_slice.items()):
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for scan in scans:
            for kind, found in scan.objects:
                counts[kind][0] += int(found)
                counts[kind][1] += 1
        for kind, (hit, total) in sorted(counts.items()):
            lines.append(f"{slice_mm:6.1f} {kind:22} {hit:3d}/{total:<3d} {hit / total:6.3f}")
        false = sum(1 for s in scans for _, ok, _ in s.candidates if not ok)
        lines.append(
            f"{slice_mm:6.1f} {'false candidates/scan':22} {false:3d}/{len(scans):<3d} "
            f"{false / max(len(scans), 1):6.3f}"
        )
    return lines


def froc_table(results: list[ScanResult]) -> list[str]:
    """Embolus sensitivity at fixed false-candidate rates, sweeping the confidence threshold."""
    scans = len(results)
    false_conf = np.sort([c for s in results for c, ok, _ in s.candidates if not ok])[::-1]
    lines = [f"{'embolus type':22} " + " ".join(f"FP<={f:<5}" for f in FROC_FP_PER_SCAN)]
    kinds = sorted({k for s in results for k, _ in s.objects if k.startswith("pe_")})
    for kind in kinds:
        total = sum(1 for s in results for k, _ in s.objects if k == kind)
        # Each embolus is found at the highest confidence of a candidate covering it; per scan
        # the covering candidates' confidences are matched by type (a candidate covers at most
        # a few emboli).
        best: list[float] = []
        for s in results:
            n_kind = sum(1 for k, found in s.objects if k == kind and found)
            confs = sorted(
                (c for c, ok, types in s.candidates if ok and kind in types), reverse=True
            )
            best.extend(confs[:n_kind] + [confs[-1]] * max(0, n_kind - len(confs)) if confs else [])
        cells = []
        for rate in FROC_FP_PER_SCAN:
            allowed = int(np.floor(rate * scans))
            threshold = false_conf[allowed] if allowed < len(false_conf) else -1.0
            hit = sum(1 for c in best if c > threshold)
            cells.append(f"{hit / max(total, 1):8.3f}")
        lines.append(f"{kind:22} " + " ".join(cells) + f"   (n={total})")
    return lines


def reliability_table(results: list[ScanResult]) -> list[str]:
    pairs = [(c, ok) for s in results for c, ok, _ in s.candidates]
    lines = [f"{'confidence bin':16} {'n':>5} {'mean conf':>10} {'obs true':>9}"]
    for lo, hi in itertools.pairwise(RELIABILITY_BINS):
        inside = [(c, ok) for c, ok in pairs if lo <= c < hi]
        if not inside:
            lines.append(f"[{lo:.1f}, {min(hi, 1.0):.1f}){'':6} {0:5d}")
            continue
        mean_c = float(np.mean([c for c, _ in inside]))
        observed = float(np.mean([ok for _, ok in inside]))
        lines.append(
            f"[{lo:.1f}, {min(hi, 1.0):.1f}){'':6} {len(inside):5d} {mean_c:10.3f} {observed:9.3f}"
        )
    return lines


def report(title: str, results: list[ScanResult], verbose: bool) -> None:
    if not results:
        return
    print(f"\n=== {title}: {len(results)} scans ===")
    print("\n".join(sensitivity_table(results)))
    print("\nFROC (emboli, by size class; sensitivity at false candidates per scan):")
    print("\n".join(froc_table(results)))
    print("\nReliability of confidence:")
    print("\n".join(reliability_table(results)))
    times = [r.seconds for r in results]
    print(f"\nfind_cement: median {np.median(times):.2f} s, max {max(times):.2f} s per scan")
    if verbose:
        for r in results:
            for note in r.missed_notes + r.false_notes:
                print("  " + note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", default=",".join(str(s) for s in SLICES_MM))
    parser.add_argument("--tuning", type=int, default=len(TUNING_SEEDS))
    parser.add_argument("--held-out", type=int, default=len(HELD_OUT_SEEDS))
    parser.add_argument("--no-held-out", action="store_true")
    parser.add_argument("--fresh", type=int, default=0, help="N tuning seeds from 2000 on")
    parser.add_argument("--anatomy", action="store_true", help="pass compute_anatomy's result")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="list every miss and false one")
    parser.add_argument("--pixel-mm", type=float, default=PIXEL_MM, help="in-plane pixel size")
    args = parser.parse_args()
    slices = [float(s) for s in args.slices.split(",")]
    if args.tuning:
        tuning = run(TUNING_SEEDS[: args.tuning], slices, args.jobs, args.anatomy, args.pixel_mm)
        report("tuning seeds", tuning, args.verbose)
    if args.fresh:
        seeds = range(FRESH_SEEDS_START, FRESH_SEEDS_START + args.fresh)
        fresh = run(seeds, slices, args.jobs, args.anatomy, args.pixel_mm)
        report("fresh tuning seeds", fresh, args.verbose)
    if not args.no_held_out:
        held = run(HELD_OUT_SEEDS[: args.held_out], slices, args.jobs, args.anatomy, args.pixel_mm)
        report("HELD-OUT seeds", held, args.verbose)


if __name__ == "__main__":
    main()
