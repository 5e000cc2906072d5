"""Cohort statistics and report: rates against counts made here from phantom truth, Wilson
intervals, failures kept out of the rates, risk-factor comparisons, and `cementscan cohort`."""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CliRun
from scipy.stats import binomtest, mannwhitneyu, norm

from cementscan.cohort import stats
from cementscan.cohort.cohort_report import TABLES, write_cohort_report
from cementscan.cohort.records import StudyInput, StudyOutcome, StudyRecord
from cementscan.findings.vocabulary import LEAK_CATEGORIES, YEOM_TYPES
from cementscan.synth import make_phantom, preset_spec

PRESETS = (
    "reference-case",
    "negative",
    "all-leaks",
    "right-heart",
    "thoracic-azygos",
    "canal-leak",
)
NOT_LEAKS = ("intravertebral",)


# --- inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def truths() -> dict[str, dict[str, Any]]:
    """truth.json content of each preset (the same dict `cementscan phantom` writes)."""
    return {
        p: make_phantom(preset_spec(p, seed=0, slice_mm=5.0, pixel_mm=4.0)).truth_json()
        for p in PRESETS
    }


def truth_document(truth: dict[str, Any]) -> dict[str, Any]:
    """A findings.json document from a phantom's truth: its summary and its objects as findings
    (the contract fields the truth lacks filled with plausible values)."""
    findings = []
    for o in truth["objects"]:
        x, y, z = o["centroid_lps_mm"]
        findings.append(
            {
                **{k: o[k] for k in ("id", "series_index", "category", "yeom_type", "shape")},
                **{k: o[k] for k in ("volume_ml", "length_mm", "level", "side", "lung_zone")},
                "category_basis": "anatomy",
                "centroid_lps_mm": [x, y, z],
                "bbox_lps_mm": [[x - 2, y - 2, z - 2], [x + 2, y + 2, z + 2]],
                "max_diameter_mm": 2.0,
                "mean_hu": o["hu"],
                "max_hu": o["hu"],
                "level_offset": None,
                "lobe": o.get("lobe"),
                "central": o["central"],
                "connected_to": o["connected_to"],
                "canal_compromise_pct": None,
                "confidence": 0.9,
            }
        )
    return {
        "schema": "cementscan.findings/1",
        "software": {"name": "cementscan", "version": "test"},
        "findings": findings,
        "summary": truth["summary"],
        "management": {"suggestion": "none", "basis": [], "inputs": {"symptoms": []}},
        "warnings": [],
    }


# (key, patient, preset whose truth is the document or None, status, error)
COHORT: tuple[tuple[str, str, str | None, str, str | None], ...] = (
    ("s01", "P-a", "reference-case", "ok", None),
    ("s02", "P-a", "all-leaks", "ok", None),  # the same patient again: counts once
    ("s03", "P-a", "negative", "ok", None),
    ("s04", "P-b", "negative", "ok", None),
    ("s05", "P-c", "right-heart", "ok", None),
    ("s06", "P-d", "thoracic-azygos", "ok", None),
    ("s07", "P-e", "canal-leak", "ok", None),  # lungs not assessable
    ("s08", "P-f", "negative", "ok", None),
    ("s09", "P-g", "all-leaks", "ok", None),
    ("s10", "P-g", "canal-leak", "ok", None),  # L1 again, another leak at L1: one vertebra
    ("s11", "P-h", None, "input_error", "s11: not a CT (modality MR)"),
    # A failed study that still carries a (stale) document must not enter either.
    ("s12", "P-b", "all-leaks", "internal_error", "ValueError: boom"),
    ("s13", "P-i", None, "timeout", "exceeded --timeout 600 s"),
)


def cohort_records(truths: dict[str, dict[str, Any]]) -> list[StudyRecord]:
    return [
        StudyRecord(
            key=key,
            patient_pseudonym=patient,
            status=status,
            error=error,
            document=truth_document(truths[preset]) if preset else None,
        )
        for key, patient, preset, status, error in COHORT
    ]


def ok_truths(truths: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, patient, truth) of the studies that should enter the rates."""
    return [(k, p, truths[t]) for k, p, t, status, _ in COHORT if status == "ok" and t]


def row(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def leaking_levels(truth: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """Treated level -> (breakdown, group) of the leaks flowing out of its intravertebral
    cement, found by walking *downstream* from each treated body (the code walks upstream)."""
    children: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for o in truth["objects"]:
        if o["connected_to"] is not None:
            children[o["connected_to"]].append(o)
    out: dict[str, set[tuple[str, str]]] = {
        t["level"]: set() for t in truth["summary"]["treated_levels"]
    }
    for body in (o for o in truth["objects"] if o["category"] == "intravertebral"):
        stack = list(children[body["id"]])
        while stack:
            o = stack.pop()
            out[body["level"]] |= {("any", "any"), ("category", o["category"])}
            if o["yeom_type"]:
                out[body["level"]].add(("yeom_type", o["yeom_type"]))
            stack += children[o["id"]]
    return out


def study_groups(truth: dict[str, Any]) -> set[tuple[str, str]]:
    groups = {("any", "any")} if truth["summary"]["leak_present"] else set()
    for o in truth["objects"]:
        if o["category"] not in NOT_LEAKS:
            groups.add(("category", o["category"]))
            if o["yeom_type"]:
                groups.add(("yeom_type", o["yeom_type"]))
    return groups


# --- Wilson ----------------------------------------------------------------------------------


def test_wilson_interval_is_scipys_and_matches_the_formula() -> None:
    z = norm.ppf(0.975)
    for k, n in ((3, 10), (23, 244), (14, 54)):
        p = stats.wilson(k, n)
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert (p.ci95_low, p.ci95_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
        # Wilson's score interval written out (Newcombe 1998 eq. 3), as a check by hand.
        phat = k / n
        centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert (p.ci95_low, p.ci95_high) == pytest.approx((centre - half, centre + half), abs=1e-9)
        assert p.rate == k / n
    # Luetmer 2011 report 23/244 = 9.4% (95% CI 6–13%): clinical-evidence.md §2.1.
    luetmer = stats.wilson(23, 244)
    assert (round(luetmer.ci95_low, 2), round(luetmer.ci95_high, 2)) == (0.06, 0.14)
    none = stats.wilson(0, 10)
    assert none.rate == 0.0 and none.ci95_low == 0.0
    assert none.ci95_high == pytest.approx(z * z / (10 + z * z), abs=1e-9)  # 0.2775
    assert stats.wilson(10, 10).ci95_high == pytest.approx(1.0)
    empty = stats.wilson(0, 0)
    assert (empty.total, empty.rate, empty.ci95_low, empty.ci95_high) == (0, None, None, None)


# --- rates from phantom truth ----------------------------------------------------------------


def test_leak_rates_equal_the_counts_from_the_truth(truths: dict[str, dict[str, Any]]) -> None:
    rows = stats.leak_rates(cohort_records(truths))
    studies = ok_truths(truths)
    per_patient: dict[str, set[tuple[str, str]]] = defaultdict(set)
    vertebrae: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for _, patient, truth in studies:
        per_patient[patient] |= study_groups(truth)
        for level, groups in leaking_levels(truth).items():
            vertebrae[(patient, level)] |= groups
    members = {
        "study": [study_groups(t) for _, _, t in studies],
        "patient": list(per_patient.values()),
        "treated_level": list(vertebrae.values()),
    }
    assert len(members["patient"]) < len(members["study"])  # patients with several studies
    checked = 0
    for unit, sets in members.items():
        for r in (r for r in rows if r["unit"] == unit):
            want = sum((r["breakdown"], r["group"]) in s for s in sets)
            assert (r["positive"], r["total"]) == (want, len(sets)), r
            assert r["rate"] == pytest.approx(want / len(sets))
            checked += 1
    per_unit = 1 + len(LEAK_CATEGORIES) + len(YEOM_TYPES)
    assert checked == len(rows) == 3 * per_unit - 2  # no PCE/right-heart rate per level
    # The cohort exercises the interesting cases: a patient with several leaking studies, a
    # vertebra leaking in two studies of one patient, every Yeom type.
    any_patient = row(rows, unit="patient", breakdown="any", group="any")["positive"]
    assert any_patient < row(rows, unit="study", breakdown="any", group="any")["positive"]
    for yeom in ("B", "S", "C", "D"):
        assert row(rows, unit="treated_level", breakdown="yeom_type", group=yeom)["positive"] > 0


def test_a_patient_counts_once_however_many_studies_leak() -> None:
    def doc(leak: bool) -> dict[str, Any]:
        return make_document({"L1": 3.0}, leaks=[("disc", "L1", "D")] if leak else [])

    records = [StudyRecord(f"k{n}", "P-same", "ok", document=doc(True)) for n in range(3)]
    records.append(StudyRecord("k9", "P-other", "ok", document=doc(False)))
    rows = stats.leak_rates(records)
    assert row(rows, unit="study", breakdown="any", group="any")["positive"] == 3
    patient = row(rows, unit="patient", breakdown="any", group="any")
    assert (patient["positive"], patient["total"]) == (1, 2)
    level = row(rows, unit="treated_level", breakdown="category", group="disc")
    assert (level["positive"], level["total"]) == (1, 2)  # P-same's L1 once, P-other's L1


def test_failed_studies_are_left_out_of_the_rates_and_listed(
    truths: dict[str, dict[str, Any]],
) -> None:
    records = cohort_records(truths)
    ok_only = [r for r in records if r.status == "ok"]
    for function in (
        stats.leak_rates,
        stats.distributions,
        stats.vascular_involvement,
        stats.pce_count_distribution,
        stats.leak_by_level_count,
        stats.cement_volume_by_leak,
        stats.risk_tests,
    ):
        assert function(records) == function(ok_only), function.__name__
    assert stats.pce_incidence(records) == stats.pce_incidence(ok_only)
    failed = [(k, s, e) for k, _, t, s, e in COHORT if s != "ok"]
    assert [(r["key"], r["status"], r["error"]) for r in stats.failures(records)] == failed
    assert stats.failures(ok_only) == []
    overview = stats.overview(records)
    assert (overview["studies"], overview["ok_studies"], overview["failed_studies"]) == (13, 10, 3)
    # An "ok" record without its document cannot enter: it is listed, not counted.
    broken = [*ok_only, StudyRecord("s99", "P-z", "ok")]
    assert stats.leak_rates(broken) == stats.leak_rates(ok_only)
    assert stats.failures(broken)[0]["key"] == "s99"


def test_pce_ivc_and_right_heart_among_assessable_studies(
    truths: dict[str, dict[str, Any]],
) -> None:
    records = cohort_records(truths)
    summaries = [t["summary"] for _, _, t in ok_truths(truths)]
    pce = [s["pce"] for s in summaries if s["pce"]["assessable"]]
    assert len(pce) < len(summaries)  # canal-leak's lungs are not in the scan
    got = stats.pce_incidence(records)
    k, n = sum(p["present"] is True for p in pce), len(pce)
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert (got["assessable_studies"], got["pce_studies"]) == (n, k)
    assert got["incidence"] == pytest.approx(k / n)
    assert (got["ci95_low"], got["ci95_high"]) == pytest.approx((ci.low, ci.high))

    counts = Counter(p["count"] for p in pce)
    table = stats.pce_count_distribution(records)
    assert {r["pce_count"]: r["studies"] for r in table if r["studies"]} == dict(counts)
    assert [r["pce_count"] for r in table] == list(range(max(counts) + 1))

    dist = stats.distributions(records)
    present = [p for p in pce if p["present"]]
    for key in ("laterality", "zone_predominance", "predominance", "most_proximal"):
        want = Counter(p[key] for p in present)
        got_counts = {
            r["value"]: r["count"] for r in dist if r["attribute"] == f"pce_{key}" and r["count"]
        }
        assert got_counts == dict(want), key
    emboli = [
        o
        for _, _, t in ok_truths(truths)
        if t["summary"]["pce"]["assessable"]
        for o in t["objects"]
        if o["category"] == "pulmonary_artery"
    ]
    assert sum(p["count"] for p in pce) == len(emboli)
    for attribute, field in (("embolus_side", "side"), ("embolus_lung_zone", "lung_zone")):
        got_counts = {r["value"]: r["count"] for r in dist if r["attribute"] == attribute}
        assert {v: c for v, c in got_counts.items() if c} == dict(Counter(o[field] for o in emboli))
        assert sum(r["fraction"] for r in dist if r["attribute"] == attribute) == pytest.approx(1)

    vascular = {r["site"]: r for r in stats.vascular_involvement(records)}
    for site in ("ivc", "right_heart"):
        blocks = [s[site] for s in summaries if s[site]["assessable"]]
        k, n = sum(b["present"] is True for b in blocks), len(blocks)
        assert (vascular[site]["assessable_studies"], vascular[site]["present_studies"]) == (n, k)
        assert vascular[site]["ci95_low"] == pytest.approx(stats.wilson(k, n).ci95_low)
    assert vascular["right_heart"]["assessable_studies"] < len(summaries)


# --- risk factors ----------------------------------------------------------------------------


def make_document(
    levels_ml: dict[str | None, float],
    leaks: Sequence[tuple[str, str | None, str | None]] = (),
    pce_count: int | None = 0,
) -> dict[str, Any]:
    """A minimal findings document: treated levels with their volume, leaks (category, level of
    the body they leave, Yeom type) connected to that body, and ``pce_count`` emboli (None:
    lungs not assessable)."""
    findings: list[dict[str, Any]] = []

    def add(category: str, level: str | None, upstream: int | None = None, **more: Any) -> int:
        findings.append(
            {"id": len(findings) + 1, "category": category, "level": level, "yeom_type": None}
            | {"connected_to": upstream, **more}
        )
        return len(findings)

    body_ids = {level: add("intravertebral", level) for level in levels_ml}
    for category, level, yeom in leaks:
        add(category, level, body_ids.get(level), yeom_type=yeom)
    for n in range(pce_count or 0):
        add("pulmonary_artery", None, side="right" if n % 2 else "left", lung_zone="lower")
    leak_counts = Counter(c for c, _, _ in leaks)
    return {
        "findings": findings,
        "summary": {
            "treated_levels": [
                {"level": lv, "cement_volume_ml": v, **({} if lv else {"level_offset": 0})}
                for lv, v in levels_ml.items()
            ],
            "leak_present": bool(leaks) or bool(pce_count),
            "leaks": dict(leak_counts),
            "ivc": {"assessable": True, "present": "ivc" in leak_counts},
            "right_heart": {"assessable": pce_count is not None, "present": False},
            "pce": {
                "assessable": pce_count is not None,
                "present": None if pce_count is None else pce_count > 0,
                "count": pce_count or 0,
            },
        },
    }


def test_leak_by_number_of_levels_and_cement_volume() -> None:
    rng = np.random.default_rng(7)
    records = []
    plan = []  # (levels, leak) per study
    for n in range(14):
        n_levels = 1 + n % 4
        leak = n % 3 != 0
        volumes = {
            lv: round(float(rng.uniform(2, 6)), 3) for lv in ("L1", "L2", "L3", "L4")[:n_levels]
        }
        leaks = [("paravertebral_vein", "L1", "S")] if leak else []
        records.append(
            StudyRecord(f"k{n:02d}", f"P{n}", "ok", document=make_document(volumes, leaks))
        )
        plan.append((n_levels, leak, sum(volumes.values()), volumes))
    records.append(StudyRecord("none", "Px", "ok", document=make_document({})))

    table = {r["treated_levels"]: r for r in stats.leak_by_level_count(records)}
    assert list(table) == ["0", "1", "2", ">=3"]
    for group, members in (("1", [1]), ("2", [2]), (">=3", [3, 4])):
        chosen = [leak for n_levels, leak, _, _ in plan if n_levels in members]
        assert (table[group]["studies"], table[group]["leak_studies"]) == (len(chosen), sum(chosen))
        assert table[group]["ci95_high"] == pytest.approx(
            stats.wilson(sum(chosen), len(chosen)).ci95_high
        )
    assert (table["0"]["studies"], table["0"]["leak_studies"]) == (1, 0)

    leak_ml = [total for _, leak, total, _ in plan if leak]
    dry_ml = [total for _, leak, total, _ in plan if not leak]
    volume = {(r["unit"], r["group"]): r for r in stats.cement_volume_by_leak(records)}
    for group, values in (("leak", leak_ml), ("no_leak", dry_ml)):
        got = volume[("study", group)]
        assert got["n"] == len(values)  # the study without a treated level is left out
        assert got["volume_median_ml"] == pytest.approx(np.median(values))
        assert (got["volume_q1_ml"], got["volume_q3_ml"]) == pytest.approx(
            tuple(np.percentile(values, [25, 75]))
        )
    level_leak = [v["L1"] for _, leak, _, v in plan if leak]
    assert volume[("treated_level", "leak")]["n"] == len(level_leak)
    assert volume[("treated_level", "leak")]["volume_median_ml"] == pytest.approx(
        np.median(level_leak)
    )

    tests = {r["variable"]: r for r in stats.risk_tests(records)}
    want = mannwhitneyu(leak_ml, dry_ml, alternative="two-sided")
    got = tests["study_cement_volume_ml"]
    assert (got["leak_n"], got["no_leak_n"]) == (len(leak_ml), len(dry_ml))
    assert got["u_statistic"] == pytest.approx(want.statistic)
    assert got["p_value"] == pytest.approx(want.pvalue)
    assert got["note"] == ""
    counts = tests["study_treated_level_count"]
    assert counts["p_value"] == pytest.approx(
        mannwhitneyu([p[0] for p in plan if p[1]], [p[0] for p in plan if not p[1]]).pvalue
    )

    # Two studies without a leak: too few for a test, said so, no p-value.
    leaking = [r for r in records if r.document and r.document["summary"]["leak_present"]]
    dry = [r for r in records if r.document and not r.document["summary"]["leak_present"]]
    small = {r["variable"]: r for r in stats.risk_tests(leaking + dry[:2])}
    assert small["study_cement_volume_ml"]["no_leak_n"] == 2
    assert small["study_cement_volume_ml"]["p_value"] is None
    assert small["study_cement_volume_ml"]["note"].startswith("too few")


def test_treated_bodies_of_unknown_level_are_counted() -> None:
    # No level anchor: two treated bodies without a level, one with a disc leak and its IVC
    # continuation, one dry; an isolated fragment is attributed to no body.
    doc = make_document({None: 3.0}, leaks=[("disc", None, "D")])
    blank = {"yeom_type": None, "level": None}
    doc["findings"] += [
        {**blank, "id": 90, "category": "intravertebral", "connected_to": None},
        {**blank, "id": 91, "category": "ivc", "connected_to": 2},
        {**blank, "id": 92, "category": "other", "connected_to": None},
    ]
    doc["summary"]["treated_levels"].append({"level": None, "cement_volume_ml": 2.0})
    bodies = stats.treated_bodies(doc)
    assert sorted(len(found) for found in bodies.values()) == [0, 2]
    records = [
        StudyRecord("a", "P1", "ok", document=doc),
        StudyRecord("b", "P1", "ok", document=doc),
    ]
    rate = row(stats.leak_rates(records), unit="treated_level", breakdown="any", group="any")
    # Bodies of unknown level are not merged across studies: 2 studies x 2 bodies.
    assert (rate["positive"], rate["total"]) == (2, 4)
    assert row(stats.leak_by_level_count(records), treated_levels="2")["studies"] == 2


# --- the report files and the command --------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def check_report(folder: Path, records: list[StudyRecord]) -> None:
    for table in TABLES:
        columns, _ = read_csv(folder / table.file_name)
        assert tuple(columns) == table.columns, table.file_name
    columns, rows = read_csv(folder / "pce_incidence.csv")
    assert columns == ["assessable_studies", "pce_studies", "incidence", "ci95_low", "ci95_high"]
    want = stats.pce_incidence(records)
    assert int(rows[0]["assessable_studies"]) == want["assessable_studies"]
    assert int(rows[0]["pce_studies"]) == want["pce_studies"]
    for key in ("incidence", "ci95_low", "ci95_high"):
        assert float(rows[0][key]) == pytest.approx(want[key], rel=1e-5)
    _, failed = read_csv(folder / "failures.csv")
    assert [r["key"] for r in failed] == [r.key for r in records if r.status != "ok"]
    page = (folder / "cohort.html").read_text()
    assert "not a diagnosis" in page and "research use" in page
    ok = sum(r.status == "ok" for r in records)
    assert f"{ok} studies of" in page and f"{len(records) - ok} of {len(records)} recorded" in page
    for png in (
        "pce_counts.png",
        "pce_side_zone.png",
        "volume_vs_leak.png",
        "leak_by_level_count.png",
    ):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'href="{png}"' in page
    assert page.count('<img src="data:image/png;base64,') == 4


def test_report_is_written_whole_and_replaces_the_previous_one(
    truths: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    records = cohort_records(truths)
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "stale.csv").write_text("old")
    page = write_cohort_report(records, tmp_path)
    assert page == tmp_path / "cohort" / "cohort.html"
    check_report(tmp_path / "cohort", records)
    assert not (tmp_path / "cohort" / "stale.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]  # no staging folder left


def test_cohort_command_reads_the_results_database(
    truths: dict[str, dict[str, Any]], tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    from cementscan.cohort.database import ResultsDatabase

    records = cohort_records(truths)
    out = tmp_path / "out"
    out.mkdir()
    with ResultsDatabase.open(None, out) as database:
        run_id = database.start_run(root="/data", software_version="test", options={}, host="h")
        for r in records:
            study = StudyInput(key=r.key, paths=(f"/data/{r.key}",), fingerprint="f")
            outcome = StudyOutcome(
                r.key, r.status, "f", "test", 1.0, error=r.error, document=r.document
            )
            database.record_outcome(run_id, study, outcome, r.patient_pseudonym)
    result = cli("cohort", out)
    assert result.code == 0, result.err
    counts = stats.overview(records)
    assert (
        f"{counts['ok_studies']} studies of {counts['patients']} patients entered, " in result.out
    )
    assert f"{counts['failed_studies']} failed" in result.out
    check_report(out / "cohort", records)
    _, rows = read_csv(out / "cohort" / "leak_rates.csv")
    patient = row(rows, unit="patient", breakdown="any", group="any")
    want = row(stats.leak_rates(records), unit="patient", breakdown="any", group="any")
    assert (int(patient["positive"]), int(patient["total"])) == (want["positive"], want["total"])

    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "missing"):
        result = cli("cohort", target)
        assert result.code == 2
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert list(empty.iterdir()) == []  # no database was created in passing
    result = cli("cohort", out, "--db", f"sqlite:///{tmp_path / 'nothing.sqlite'}")
    assert result.code == 2 and "no results database" in result.err
