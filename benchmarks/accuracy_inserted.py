"""Accuracy of ``analyze`` on real CT with inserted cement: the validation set of make_validation_set.

For every case (a committed spec under validation_specs/<split>/<volume>/ inserted into that
shared volume) it runs ``analyze`` in-process and scores it against truth_labels.nii.gz and
truth.json on the same grid:

- a truth object is found when some finding's label overlaps its voxels; its category is right
  when most of its voxels lie in findings of the truth category (summed over findings, so a cast
  split into several findings is judged by the majority of its voxels); its side likewise;
- a false finding overlaps no truth object;
- per case: PCE laterality, predominance and count (when the truth has emboli), treated levels,
  IVC cranial extent and right heart (when the truth has them) against truth.json's summary.

Tables: sensitivity by object type and by volume, category accuracy, false findings per scan,
summary agreement, a reliability table of ``confidence``, emboli FROC points and the per-case
analyze time. Tuning and held-out specs are reported separately; the held-out specs were
committed before tuning and must not steer the detector (validation_specs/held_out/README.md).

Targets (issue #4): sensitivity >= 0.90, category accuracy >= 0.90, <= 0.2 false findings per
scan, laterality and predominance right.

    python benchmarks/accuracy_inserted.py [--data /work/shared/data]
        [--set /tmp/cementscan-validation] [--split tuning|held_out|all] [--build]
        [--anatomy classical|none|imported] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import make_validation_set
import numpy as np
import SimpleITK as sitk
from accuracy_detection import ScanResult, froc_table, reliability_table

from cementscan.errors import InputError
from cementscan.findings import Finding
from cementscan.findings.vocabulary import VERTEBRAL_LEVELS
from cementscan.pipeline import AnalysisOptions, analyze
from cementscan.synth import insert as insert_code
from cementscan.synth import insert_spec as insert_spec_code
from cementscan.synth import truth as truth_code

# A case built before the last change to these is rebuilt.
INSERT_CODE = (insert_code, insert_spec_code, truth_code, make_validation_set)

SPLITS = make_validation_set.SPLITS
TARGET_SENSITIVITY = 0.90
TARGET_CATEGORY_ACCURACY = 0.90
TARGET_FALSE_PER_SCAN = 0.2
CUMULATIVE_CONFIDENCE = (0.5, 0.7, 0.8, 0.9)


@dataclass
class ObjectScore:
    """One truth object (with at least one voxel in truth_labels) and what analyze made of it."""

    id: int
    kind: str  # reporting type: the category, or pe_<shape> for pulmonary emboli
    category: str
    side: str
    voxels: int
    found: bool
    predicted_category: str | None = None  # held by most of its voxels over all its findings
    predicted_side: str | None = None
    centroid_lps_mm: tuple[float, ...] = ()


@dataclass
class FindingScore:
    """One finding: does it overlap truth cement, and is its category that object's category."""

    finding: Finding
    true: bool
    right: bool  # true and its category is that of the truth object it overlaps most
    kinds: tuple[str, ...]  # reporting types of the truth objects it overlaps


@dataclass
class CaseScore:
    split: str
    volume: str
    case: str
    seconds: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    objects: list[ObjectScore] = field(default_factory=list)
    findings: list[FindingScore] = field(default_factory=list)
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (truth, analyze)
    warnings: tuple[str, ...] = ()
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.volume}/{self.case}"

    @property
    def false_findings(self) -> list[FindingScore]:
        return [f for f in self.findings if not f.true]


# ------------------------------------------------------------------------------------------
# Building and running
# ------------------------------------------------------------------------------------------
def spec_cases(split: str) -> list[tuple[str, str]]:
    """(volume, case) of every committed spec of ``split`` whose volume make_validation_set knows."""
    specs = sorted((make_validation_set.SPECS / split).glob("*/*.json"))
    return [(p.parent.name, p.stem) for p in specs if p.parent.name in make_validation_set.INPUTS]


def ensure_built(set_dir: Path, data: Path, split: str, force: bool) -> None:
    """Build ``split`` with make_validation_set when asked, or when a case is missing or older
    than its spec or the insert code."""
    code_mtime = max(Path(m.__file__ or "").stat().st_mtime for m in INSERT_CODE)
    stale = []
    for volume, case in spec_cases(split):
        truth = set_dir / split / volume / case / "truth.json"
        spec = make_validation_set.SPECS / split / volume / f"{case}.json"
        newest = max(spec.stat().st_mtime, code_mtime)
        if not truth.exists() or truth.stat().st_mtime < newest:
            stale.append(case)
    if not force and not stale:
        return
    why = "--build" if force else f"{len(stale)} case(s) missing or older than spec or code"
    print(f"building {split} into {set_dir} ({why})")
    argv = ["--out", str(set_dir), "--data", str(data), "--split", split]
    if make_validation_set.main(argv) != 0:
        print(f"some {split} cases failed to build; scoring the ones that exist", file=sys.stderr)


def read_labels(path: Path) -> np.ndarray:
    """A label map indexed [i, j, k] like CTVolume.hu (the transpose analyze's loader uses)."""
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)


def object_kind(obj: dict[str, Any]) -> str:
    if obj["category"] == "pulmonary_artery":
        return f"pe_{obj['shape']}"
    return str(obj["category"])


def score_case(split: str, volume: str, case: str, case_dir: Path, anatomy: str) -> CaseScore:
    """Run analyze on one inserted case and compare it with its truth."""
    score = CaseScore(split, volume, case)
    truth = json.loads((case_dir / "truth.json").read_text())
    clock = time.perf_counter()
    try:
        result = analyze(
            [case_dir / "ct.nii.gz"], AnalysisOptions(anatomy=anatomy, formats=("json",))
        )
    except InputError as exc:
        score.error = str(exc)
        return score
    score.seconds = time.perf_counter() - clock
    doc = result.document
    score.stage_s = dict(doc.timings_s)
    score.warnings = doc.warnings
    truth_labels = read_labels(case_dir / "truth_labels.nii.gz").astype(np.int64)
    found_labels = np.asarray(result.label_maps[0], dtype=np.int64)
    if truth_labels.shape != found_labels.shape:
        score.error = f"truth grid {truth_labels.shape} != analyze grid {found_labels.shape}"
        return score

    # Voxel counts of every (truth id, finding id) pair where either is non-zero.
    inside = (truth_labels > 0) | (found_labels > 0)
    width = int(found_labels.max(initial=0)) + 1
    codes, counts = np.unique(
        truth_labels[inside] * width + found_labels[inside], return_counts=True
    )
    overlap: dict[tuple[int, int], int] = {
        (int(c) // width, int(c) % width): int(n) for c, n in zip(codes, counts, strict=True)
    }
    by_finding = {f.id: f for f in doc.findings if f.series_index == 0}
    objects = {int(o["id"]): o for o in truth["objects"]}

    def majority(truth_id: int, attribute: str) -> str | None:
        """The value of ``attribute`` (category, side) held by most of a truth object's voxels,
        summed over the findings that cover it (a cast split into several findings)."""
        votes: Counter[str] = Counter()
        for (tid, fid), n in overlap.items():
            if tid == truth_id and fid in by_finding:
                votes[str(getattr(by_finding[fid], attribute))] += n
        return votes.most_common(1)[0][0] if votes else None

    for tid, obj in sorted(objects.items()):
        voxels = sum(n for (t, _), n in overlap.items() if t == tid)
        if voxels == 0:
            continue  # too thin to own a voxel: not scoreable (insert warns about it)
        category = majority(tid, "category")
        score.objects.append(
            ObjectScore(
                id=tid,
                kind=object_kind(obj),
                category=obj["category"],
                side=obj["side"],
                voxels=voxels,
                found=category is not None,
                predicted_category=category,
                predicted_side=majority(tid, "side"),
                centroid_lps_mm=tuple(obj["centroid_lps_mm"]),
            )
        )
    for fid, finding in sorted(by_finding.items()):
        held = {tid: n for (tid, f), n in overlap.items() if f == fid and tid > 0}
        main_truth = max(held, key=lambda tid: held[tid]) if held else None
        right = main_truth is not None and objects[main_truth]["category"] == finding.category
        kinds = tuple(sorted({object_kind(objects[tid]) for tid in held if tid in objects}))
        score.findings.append(FindingScore(finding, bool(held), right, kinds))
    score.checks = summary_checks(truth["summary"], doc.summary)
    return score


def summary_checks(truth: dict[str, Any], found: Any) -> dict[str, tuple[str, str]]:
    """The summary statements the truth can be held to, as (truth, analyze) strings."""
    checks: dict[str, tuple[str, str]] = {}
    truth_levels = _level_text(t["level"] for t in truth["treated_levels"])
    # Without a level anchor analyze gives a level offset instead: shown as ?+n.
    found_levels = _level_text(
        t.level or f"?{t.level_offset:+d}" if t.level_offset is not None else t.level
        for t in found.treated_levels
    )
    if truth_levels != "-" or found_levels != "-":
        checks["treated levels"] = (truth_levels, found_levels)
    if truth["ivc"].get("present"):
        checks["ivc cranial extent"] = (
            str(truth["ivc"]["cranial_extent_level"]),
            str(found.ivc.cranial_extent_level) if found.ivc.present else "absent",
        )
    if truth.get("right_heart", {}).get("present"):
        checks["right heart present"] = ("True", str(found.right_heart.present))
    pce = truth["pce"]
    if pce.get("present"):
        checks["pce laterality"] = (pce["laterality"], found.pce.laterality)
        checks["pce predominance"] = (pce["predominance"], found.pce.predominance)
        checks["pce count"] = (str(pce["count"]), str(found.pce.count))
    return checks


def _level_text(levels: Iterable[str | None]) -> str:
    """Levels cranial to caudal, space-separated ("-" for none)."""
    order = {level: n for n, level in enumerate(VERTEBRAL_LEVELS)}
    names = sorted((str(level) for level in levels), key=lambda lv: (order.get(lv, 99), lv))
    return " ".join(names) or "-"


def run_split(split: str, set_dir: Path, anatomy: str, data: Path) -> list[CaseScore]:
    scores = []
    for volume, case in spec_cases(split):
        case_dir = set_dir / split / volume / case
        if not (case_dir / "truth.json").exists():
            print(f"  missing {case_dir}", file=sys.stderr)
            continue
        # insert keeps the scan's grid, so the volume's shipped labels fit the inserted case
        # (the truth was placed with the same labels: this measures the imported path only).
        # Volumes without a multilabel file (the crops) keep classical anatomy.
        labels = data / volume / "labels.nii.gz"
        masks = anatomy
        if anatomy == "imported":
            masks = str(labels) if labels.exists() else "classical"
        score = score_case(split, volume, case, case_dir, masks)
        status = f"FAILED: {score.error}" if score.error else f"{score.seconds:5.1f} s"
        print(f"  {split:9s} {score.name:52s} {status}", flush=True)
        scores.append(score)
    return scores


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------
def _ratio(hit: int, total: int) -> str:
    return f"{hit:3d}/{total:<3d} {hit / total:6.3f}" if total else f"{0:3d}/{0:<3d} {'-':>6}"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "BELOW TARGET"


def type_table(cases: list[CaseScore]) -> list[str]:
    """Sensitivity by object type; category and side accuracy among the found ones."""
    lines = [f"{'object type':26} {'found':>7} {'sens':>6}   {'category':>7} {'acc':>6}   "
             f"{'side':>7} {'acc':>6}"]  # fmt: skip
    groups: dict[str, list[ObjectScore]] = defaultdict(list)
    for c in cases:
        for o in c.objects:
            groups[o.kind].append(o)
    everything = [o for c in cases for o in c.objects]
    for kind, objs in [*sorted(groups.items()), ("ALL", everything)]:
        found = [o for o in objs if o.found]
        cat_ok = sum(o.predicted_category == o.category for o in found)
        side_ok = sum(o.predicted_side == o.side for o in found)
        lines.append(
            f"{kind:26} {_ratio(len(found), len(objs))}   {_ratio(cat_ok, len(found))}   "
            f"{_ratio(side_ok, len(found))}"
        )
    return lines


def volume_table(cases: list[CaseScore]) -> list[str]:
    lines = [f"{'volume':26} {'scans':>5} {'found':>7} {'sens':>6}   {'category':>7} {'acc':>6}"
             f"   {'false/scan':>10}"]  # fmt: skip
    groups: dict[str, list[CaseScore]] = defaultdict(list)
    for c in cases:
        groups[c.volume].append(c)
    for volume, group in sorted(groups.items()):
        objs = [o for c in group for o in c.objects]
        found = [o for o in objs if o.found]
        cat_ok = sum(o.predicted_category == o.category for o in found)
        false = sum(len(c.false_findings) for c in group)
        lines.append(
            f"{volume:26} {len(group):5d} {_ratio(len(found), len(objs))}   "
            f"{_ratio(cat_ok, len(found))}   {false / len(group):10.2f}"
        )
    return lines


def headline(cases: list[CaseScore]) -> list[str]:
    objs = [o for c in cases for o in c.objects]
    found = [o for o in objs if o.found]
    cat_ok = sum(o.predicted_category == o.category for o in found)
    false = sum(len(c.false_findings) for c in cases)
    sens = len(found) / max(len(objs), 1)
    acc = cat_ok / max(len(found), 1)
    rate = false / max(len(cases), 1)
    return [
        f"sensitivity        {len(found)}/{len(objs)} = {sens:.3f}  (target >= "
        f"{TARGET_SENSITIVITY}: {_verdict(sens >= TARGET_SENSITIVITY)})",
        f"category accuracy  {cat_ok}/{len(found)} = {acc:.3f}  (target >= "
        f"{TARGET_CATEGORY_ACCURACY}: {_verdict(acc >= TARGET_CATEGORY_ACCURACY)})",
        f"false findings     {false} in {len(cases)} scans = {rate:.2f}/scan  (target <= "
        f"{TARGET_FALSE_PER_SCAN}: {_verdict(rate <= TARGET_FALSE_PER_SCAN)})",
    ]


def checks_table(cases: list[CaseScore]) -> list[str]:
    lines = [
        f"{'summary statement':22} {'agree':>7} {'frac':>6}   disagreements (truth -> analyze)"
    ]
    names: dict[str, list[tuple[str, tuple[str, str]]]] = defaultdict(list)
    for c in cases:
        for name, pair in c.checks.items():
            names[name].append((c.name, pair))
    for name, rows in sorted(names.items()):
        agree = sum(t == f for _, (t, f) in rows)
        wrong = "; ".join(f"{case}: {t} -> {f}" for case, (t, f) in rows if t != f)
        lines.append(f"{name:22} {_ratio(agree, len(rows))}   {wrong}")
    return lines


def as_scan_results(cases: list[CaseScore], right: bool) -> list[ScanResult]:
    """accuracy_detection's ScanResult per case, so its reliability and FROC helpers apply.

    ``right`` chooses what a finding's "true" means: overlapping truth cement (False) or that
    and the truth category as well (True).
    """
    out = []
    for c in cases:
        scan = ScanResult(c.name, 0.0, seconds=c.seconds)
        scan.objects = [(o.kind, o.found) for o in c.objects]
        scan.candidates = [
            (f.finding.confidence, f.right if right else f.true, f.kinds) for f in c.findings
        ]
        out.append(scan)
    return out


def cumulative_confidence(cases: list[CaseScore]) -> list[str]:
    """DESIGN.md §4: among findings with confidence >= p, at least a fraction p are right."""
    pairs = [(f.finding.confidence, f.right) for c in cases for f in c.findings]
    lines = []
    for p in CUMULATIVE_CONFIDENCE:
        above = [ok for conf, ok in pairs if conf >= p]
        frac = sum(above) / len(above) if above else float("nan")
        verdict = "-" if not above else _verdict(frac >= p)
        lines.append(f"confidence >= {p:.1f}: {sum(above):3d}/{len(above):<3d} right = "
                     f"{frac:.3f}  ({verdict})")  # fmt: skip
    return lines


def time_table(cases: list[CaseScore]) -> list[str]:
    stages = sorted({s for c in cases for s in c.stage_s})
    lines = [f"{'case':52} {'wall s':>7} " + " ".join(f"{s:>8}" for s in stages)
             + f" {'obj':>5} {'false':>5}"]  # fmt: skip
    for c in cases:
        found = sum(o.found for o in c.objects)
        lines.append(
            f"{c.name:52} {c.seconds:7.1f} "
            + " ".join(f"{c.stage_s.get(s, 0.0):8.2f}" for s in stages)
            + f" {found:2d}/{len(c.objects):<2d} {len(c.false_findings):5d}"
        )
    times = [c.seconds for c in cases]
    lines.append(f"analyze: median {np.median(times):.1f} s, max {max(times):.1f} s per case")
    return lines


def details(cases: list[CaseScore]) -> Iterable[str]:
    """--verbose: every miss, wrong category or side, false finding, and analyze's warnings."""
    for c in cases:
        for o in c.objects:
            where = [round(v) for v in o.centroid_lps_mm]
            if not o.found:
                yield f"{c.name}: missed {o.kind} #{o.id} ({o.voxels} vox) at {where}"
            elif o.predicted_category != o.category or o.predicted_side != o.side:
                yield (f"{c.name}: {o.kind} #{o.id} at {where} called "
                       f"{o.predicted_category}/{o.predicted_side}, truth {o.category}/{o.side}")  # fmt: skip
        for f in c.false_findings:
            fd = f.finding
            yield (f"{c.name}: false {fd.category} #{fd.id} at "
                   f"{[round(v) for v in fd.centroid_lps_mm]} conf={fd.confidence:.2f} "
                   f"vol={fd.volume_ml:.3f} ml mean={fd.mean_hu:.0f} max={fd.max_hu:.0f} HU")  # fmt: skip
        for w in c.warnings:
            yield f"{c.name}: warning: {w}"


def report(title: str, cases: list[CaseScore], verbose: bool) -> None:
    failed = [c for c in cases if c.error]
    cases = [c for c in cases if not c.error]
    print(f"\n=== {title}: {len(cases)} scans ({len(failed)} failed) ===")
    for c in failed:
        print(f"FAILED {c.name}: {c.error}")
    if not cases:
        return
    print("\n".join(headline(cases)))
    print("\nBy object type (category and side accuracy among found objects):")
    print("\n".join(type_table(cases)))
    print("\nBy volume:")
    print("\n".join(volume_table(cases)))
    print("\nSummary against truth.json:")
    print("\n".join(checks_table(cases)))
    print("\nReliability of confidence (true = overlaps inserted cement):")
    print("\n".join(reliability_table(as_scan_results(cases, right=False))))
    print("\nReliability of confidence (right = overlaps cement and category right):")
    print("\n".join(reliability_table(as_scan_results(cases, right=True))))
    print("\n".join(cumulative_confidence(cases)))
    kinds = Counter(o.kind for c in cases for o in c.objects if o.kind.startswith("pe_"))
    if kinds:
        print("\nFROC (emboli; sensitivity at false findings per scan, sweeping confidence):")
        print("\n".join(froc_table(as_scan_results(cases, right=False))))
    print("\nPer case (analyze wall time and its stage timings):")
    print("\n".join(time_table(cases)))
    if verbose:
        print("\nDetails:")
        for line in details(cases):
            print("  " + line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=make_validation_set.HERE.parent.parent / "shared" / "data")  # fmt: skip
    parser.add_argument("--set", type=Path, default=Path("/tmp/cementscan-validation"))
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="tuning",
                        help="default tuning; held_out only for final reports")  # fmt: skip
    parser.add_argument("--build", action="store_true", help="rebuild the set before scoring")
    parser.add_argument("--anatomy", choices=("classical", "none", "imported"), default="classical",
                        help="imported: the volume's shipped labels.nii.gz where it has one")  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="list misses and false findings")
    args = parser.parse_args(argv)
    splits = SPLITS if args.split == "all" else (args.split,)
    for split in splits:
        ensure_built(args.set, args.data, split, args.build)
    print(f"analyze (anatomy {args.anatomy}) on {args.set}")
    results = {split: run_split(split, args.set, args.anatomy, args.data) for split in splits}
    for split in splits:
        title = "HELD-OUT specs" if split == "held_out" else "tuning specs"
        report(f"{title}, anatomy {args.anatomy}", results[split], args.verbose)
    return 1 if any(c.error for cases in results.values() for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
