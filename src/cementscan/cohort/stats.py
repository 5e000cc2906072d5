"""Cohort incidence statistics: plain functions from StudyRecords to the rows of report tables.

Only studies with status "ok" and a findings document enter a rate; every other study is
listed by ``failures``. Rates carry a 95% Wilson score interval (scipy's ``binomtest``), the
interval cohort papers report for incidences (Luetmer 2011, Venmans 2010:
clinical-evidence.md §2.1). Each function returns rows (dicts) whose keys are the columns of
one CSV file named in cohort_report.py; an undefined value (no denominator, too few studies)
is ``None``.

Units:
- study: one analysed CT (a StudyRecord with status "ok");
- patient: a ``patient_pseudonym``; positive when any of the patient's ok studies is;
- treated level: a vertebra, i.e. (patient, level) over the patient's ok studies' treated
  levels, so a vertebra seen on two CTs of one patient counts once; positive when a leak is
  attributed to it in any of those studies (``treated_bodies``). A treated body of unknown
  level (no level anchor) is a vertebra of its own study.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest, mannwhitneyu

from cementscan.cohort.records import StudyRecord
from cementscan.findings.vocabulary import (
    LATERALITIES,
    LEAK_CATEGORIES,
    LUNG_ZONES,
    PREDOMINANCES,
    PROXIMALITIES,
    SIDES,
    VERTEBRAL_LEVELS,
    YEOM_TYPES,
    ZONE_PREDOMINANCES,
)

Row = dict[str, Any]
Document = dict[str, Any]

MIN_GROUP_FOR_TEST = 3  # Mann-Whitney U on fewer studies per group says nothing useful
LEVEL_COUNT_GROUPS = ("0", "1", "2", ">=3")  # clinical-evidence.md §5.2: ≥3 vs 1 vertebrae
# Emboli that travelled to the heart or lungs are not cement continuous with a vertebra: no
# per-level rate for them (they have their own study-level incidence).
NOT_LEVEL_ATTRIBUTABLE = ("right_heart", "pulmonary_artery")


@dataclass(frozen=True)
class Proportion:
    """k of n with its 95% Wilson score interval; rate and bounds are None when n is 0."""

    positive: int
    total: int
    rate: float | None
    ci95_low: float | None
    ci95_high: float | None


def wilson(positive: int, total: int) -> Proportion:
    """``positive`` of ``total`` with the 95% Wilson interval from scipy (None when total is 0).

    >>> p = wilson(0, 10)
    >>> (p.rate, p.ci95_low, round(p.ci95_high, 4))
    (0.0, 0.0, 0.2775)
    """
    if total == 0:
        return Proportion(positive, 0, None, None, None)
    ci = binomtest(positive, total).proportion_ci(confidence_level=0.95, method="wilson")
    return Proportion(positive, total, positive / total, float(ci.low), float(ci.high))


# --- which studies enter --------------------------------------------------------------------


def usable(records: Iterable[StudyRecord]) -> list[StudyRecord]:
    """The studies that enter the rates: status "ok" with a findings document."""
    return [r for r in records if r.status == "ok" and r.document is not None]


def failures(records: Iterable[StudyRecord]) -> list[Row]:
    """Every study left out of the rates, sorted by key: columns key, status, error."""
    rows = []
    for r in records:
        if r.status == "ok" and r.document is not None:
            continue
        error = r.error if r.status != "ok" else (r.error or "no findings document recorded")
        rows.append({"key": r.key, "status": r.status, "error": error or ""})
    return sorted(rows, key=lambda row: row["key"])


def overview(records: Sequence[StudyRecord]) -> Row:
    """Counts of the cohort: studies recorded, entered (ok), failed, patients, vertebrae."""
    ok = usable(records)
    return {
        "studies": len(records),
        "ok_studies": len(ok),
        "failed_studies": len(records) - len(ok),
        "patients": len({r.patient_pseudonym for r in ok}),
        "treated_levels": len(_vertebrae(ok)),
    }


# --- reading one document -------------------------------------------------------------------


def _summary(doc: Document) -> dict[str, Any]:
    summary = doc.get("summary") or {}
    assert isinstance(summary, dict)
    return summary


def _findings(doc: Document) -> list[dict[str, Any]]:
    return list(doc.get("findings") or [])


def _leak_findings(doc: Document) -> list[dict[str, Any]]:
    return [f for f in _findings(doc) if f.get("category") in LEAK_CATEGORIES]


def leak_present(doc: Document) -> bool:
    """summary.leak_present: any extra-osseous cement, PCE and right heart included."""
    return bool(_summary(doc).get("leak_present"))


def treated_levels(doc: Document) -> list[str]:
    """The study's treated levels with a known level (summary.treated_levels[].level), once each."""
    levels = [t.get("level") for t in _summary(doc).get("treated_levels") or []]
    return list(dict.fromkeys(level for level in levels if level))


def treated_level_count(doc: Document) -> int:
    """Number of treated bodies of the study, those of unknown level included."""
    return len(_summary(doc).get("treated_levels") or [])


def total_cement_volume_ml(doc: Document) -> float:
    """Sum of summary.treated_levels[].cement_volume_ml (missing volumes count 0)."""
    return float(
        sum(t.get("cement_volume_ml") or 0.0 for t in _summary(doc).get("treated_levels") or [])
    )


def _level_volumes_ml(doc: Document) -> dict[str, float]:
    volumes: dict[str, float] = defaultdict(float)
    for t in _summary(doc).get("treated_levels") or []:
        if t.get("level"):
            volumes[t["level"]] += float(t.get("cement_volume_ml") or 0.0)
    return dict(volumes)


def treated_bodies(doc: Document) -> dict[str, list[dict[str, Any]]]:
    """Each treated body of the study -> the leak findings attributed to it (maybe none).

    A body is named by its level, or "?<n>" when its level is unknown (no level anchor).
    A leak is attributed by following ``connected_to`` upstream (DESIGN.md §4: the pieces of
    one cast point toward the vertebra) and taking the most upstream finding of the chain
    whose ``level`` is a treated level — the intravertebral cement it left, when the chain
    reaches it; when levels are unknown, the intravertebral finding the chain starts from. A
    leak whose chain touches no treated body (an isolated pulmonary embolus, a fragment far
    from the treated vertebrae) is attributed to none.
    """
    entries = _summary(doc).get("treated_levels") or []
    known = set(treated_levels(doc))
    unknown_slots = sum(1 for t in entries if not t.get("level"))
    by_id = {f.get("id"): f for f in _findings(doc)}
    bodies: dict[str, list[dict[str, Any]]] = {level: [] for level in known}
    unknown_roots: dict[Any, str] = {}
    for finding in _leak_findings(doc):
        chain, seen = [finding], {finding.get("id")}
        while (up := chain[-1].get("connected_to")) is not None and up in by_id and up not in seen:
            seen.add(up)
            chain.append(by_id[up])
        level = next((f.get("level") for f in reversed(chain) if f.get("level") in known), None)
        root = chain[-1]
        if level is None and root.get("category") == "intravertebral" and not root.get("level"):
            if root.get("id") not in unknown_roots and len(unknown_roots) < unknown_slots:
                unknown_roots[root.get("id")] = f"?{len(unknown_roots) + 1}"
            level = unknown_roots.get(root.get("id"))
        if level is not None:
            bodies.setdefault(level, []).append(finding)
    for n in range(len(unknown_roots), unknown_slots):
        bodies[f"?{n + 1}"] = []
    return bodies


def attributed_levels(doc: Document) -> dict[str, list[dict[str, Any]]]:
    """The treated bodies with at least one attributed leak (see ``treated_bodies``)."""
    return {body: found for body, found in treated_bodies(doc).items() if found}


def _level_order(level: str) -> tuple[int, str]:
    return (VERTEBRAL_LEVELS.index(level) if level in VERTEBRAL_LEVELS else 999, level)


# --- leak rates -----------------------------------------------------------------------------


def _study_groups(doc: Document) -> set[tuple[str, str]]:
    """(breakdown, group) pairs the study is positive for."""
    groups: set[tuple[str, str]] = set()
    if leak_present(doc):
        groups.add(("any", "any"))
    return groups | _finding_groups(_leak_findings(doc))


def _finding_groups(findings: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    groups: set[tuple[str, str]] = set()
    for f in findings:
        groups.add(("category", f["category"]))
        if f.get("yeom_type"):
            groups.add(("yeom_type", f["yeom_type"]))
    return groups


def _vertebrae(ok: Sequence[StudyRecord]) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(patient, body) -> the (breakdown, group) pairs positive at that vertebra; a body of
    unknown level is one vertebra of its own study (it cannot be matched across studies)."""
    vertebrae: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for r in ok:
        assert r.document is not None
        for body, found in treated_bodies(r.document).items():
            name = body if not body.startswith("?") else f"{r.key}{body}"
            groups = vertebrae.setdefault((r.patient_pseudonym, name), set())
            if found:
                groups.add(("any", "any"))
            groups |= _finding_groups(found)
    return vertebrae


def leak_rates(records: Sequence[StudyRecord]) -> list[Row]:
    """Leak rate per study, per patient and per treated level; overall, by category, by Yeom type.

    Columns unit (study|patient|treated_level), breakdown (any|category|yeom_type), group
    (``any``, a findings category other than intravertebral, or a Yeom type B/S/C/D,
    clinical-evidence.md §1.1), positive, total, rate, ci95_low, ci95_high. Every category and
    Yeom type has a row, zero or not, except right_heart and pulmonary_artery per treated
    level (emboli are not traced to a level). The "any" study/patient rate is
    summary.leak_present (PCE and right-heart cement included); per treated level only
    attributed leaks count.
    """
    ok = usable(records)
    per_study = {r.key: _study_groups(r.document or {}) for r in ok}
    per_patient: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in ok:
        per_patient[r.patient_pseudonym] |= per_study[r.key]
    units = {
        "study": list(per_study.values()),
        "patient": list(per_patient.values()),
        "treated_level": list(_vertebrae(ok).values()),
    }
    groups = [
        ("any", "any"),
        *(("category", c) for c in LEAK_CATEGORIES),
        *(("yeom_type", y) for y in YEOM_TYPES),
    ]
    rows = []
    for unit, members in units.items():
        for breakdown, group in groups:
            if unit == "treated_level" and group in NOT_LEVEL_ATTRIBUTABLE:
                continue
            k = sum((breakdown, group) in m for m in members)
            p = wilson(k, len(members))
            rows.append(
                {
                    "unit": unit,
                    "breakdown": breakdown,
                    "group": group,
                    "positive": p.positive,
                    "total": p.total,
                    "rate": p.rate,
                    "ci95_low": p.ci95_low,
                    "ci95_high": p.ci95_high,
                }
            )
    return rows


# --- PCE, IVC, right heart ------------------------------------------------------------------


def _block(doc: Document, name: str) -> dict[str, Any]:
    block = _summary(doc).get(name) or {}
    assert isinstance(block, dict)
    return block


def _assessable(ok: Sequence[StudyRecord], name: str) -> list[dict[str, Any]]:
    blocks = [_block(r.document or {}, name) for r in ok]
    return [b for b in blocks if b.get("assessable") is True]


def pce_incidence(records: Sequence[StudyRecord]) -> Row:
    """PCE among studies whose lungs were assessable (summary.pce.assessable), Wilson 95% CI.

    Columns assessable_studies, pce_studies, incidence, ci95_low, ci95_high. Studies that
    could not show the lungs are not in the denominator: reported incidence depends on how
    and where one looks (2–26%, clinical-evidence.md §2.1).
    """
    assessable = _assessable(usable(records), "pce")
    p = wilson(sum(b.get("present") is True for b in assessable), len(assessable))
    return {
        "assessable_studies": p.total,
        "pce_studies": p.positive,
        "incidence": p.rate,
        "ci95_low": p.ci95_low,
        "ci95_high": p.ci95_high,
    }


def pce_count_distribution(records: Sequence[StudyRecord]) -> list[Row]:
    """Studies by number of emboli (summary.pce.count), PCE-assessable studies only.

    Columns pce_count, studies; one row for every count from 0 to the largest seen.
    """
    counts = Counter(int(b.get("count") or 0) for b in _assessable(usable(records), "pce"))
    top = max(counts, default=-1)
    return [{"pce_count": n, "studies": counts.get(n, 0)} for n in range(top + 1)]


def _distribution(
    unit: str, attribute: str, values: Sequence[str], vocabulary: Sequence[str]
) -> list[Row]:
    counts = Counter(values)
    seen = [v for v in vocabulary if v != "none"]
    seen += sorted(v for v in counts if v not in seen)
    total = len(values)
    return [
        {
            "unit": unit,
            "attribute": attribute,
            "value": v,
            "count": counts.get(v, 0),
            "fraction": counts.get(v, 0) / total if total else None,
        }
        for v in seen
    ]


def distributions(records: Sequence[StudyRecord]) -> list[Row]:
    """Side and zone of PCE, and the IVC's cranial extent, as counts and fractions.

    Columns unit (study|embolus), attribute, value, count, fraction (of the attribute's
    total). Study attributes pce_laterality, pce_predominance, pce_zone_predominance,
    pce_most_proximal count the studies with PCE; embolus attributes embolus_side and
    embolus_lung_zone count the pulmonary_artery findings of PCE-assessable studies (zone
    "unknown" where the lung was not fully covered); ivc_cranial_extent_level counts the
    studies with IVC cement.
    """
    ok = usable(records)
    pce_present = [b for b in _assessable(ok, "pce") if b.get("present") is True]
    emboli = [
        f
        for r in ok
        if _block(r.document or {}, "pce").get("assessable") is True
        for f in _findings(r.document or {})
        if f.get("category") == "pulmonary_artery"
    ]
    ivc_present = [b for b in _assessable(ok, "ivc") if b.get("present") is True]
    rows: list[Row] = []
    for attribute, key, vocabulary in (
        ("pce_laterality", "laterality", LATERALITIES),
        ("pce_predominance", "predominance", PREDOMINANCES),
        ("pce_zone_predominance", "zone_predominance", ZONE_PREDOMINANCES),
        ("pce_most_proximal", "most_proximal", PROXIMALITIES),
    ):
        values = [str(b.get(key) or "unknown") for b in pce_present]
        rows += _distribution("study", attribute, values, vocabulary)
    rows += _distribution(
        "embolus", "embolus_side", [str(f.get("side") or "unknown") for f in emboli], SIDES
    )
    rows += _distribution(
        "embolus",
        "embolus_lung_zone",
        [str(f.get("lung_zone") or "unknown") for f in emboli],
        LUNG_ZONES,
    )
    extents = [str(b.get("cranial_extent_level") or "unknown") for b in ivc_present]
    levels = sorted(set(extents), key=_level_order)
    rows += _distribution("study", "ivc_cranial_extent_level", extents, levels)
    return rows


def vascular_involvement(records: Sequence[StudyRecord]) -> list[Row]:
    """IVC and right-heart cement among the studies that could assess them, Wilson 95% CI.

    Columns site (ivc|right_heart), assessable_studies, present_studies, incidence, ci95_low,
    ci95_high. Both are the route to PCE (clinical-evidence.md §3).
    """
    ok = usable(records)
    rows = []
    for site in ("ivc", "right_heart"):
        assessable = _assessable(ok, site)
        p = wilson(sum(b.get("present") is True for b in assessable), len(assessable))
        rows.append(
            {
                "site": site,
                "assessable_studies": p.total,
                "present_studies": p.positive,
                "incidence": p.rate,
                "ci95_low": p.ci95_low,
                "ci95_high": p.ci95_high,
            }
        )
    return rows


# --- risk factors: number of treated levels, cement volume ----------------------------------


def _level_count_group(n: int) -> str:
    return str(n) if n < 3 else ">=3"


def leak_by_level_count(records: Sequence[StudyRecord]) -> list[Row]:
    """Study leak rate by number of treated levels (0, 1, 2, ≥3), Wilson 95% CI.

    Columns treated_levels, studies, leak_studies, leak_rate, ci95_low, ci95_high. More
    levels per session is a reported risk factor for PCE and intracardiac cement
    (clinical-evidence.md §5.2); "0" holds studies where no treated level was found.
    """
    groups: dict[str, list[bool]] = {g: [] for g in LEVEL_COUNT_GROUPS}
    for r in usable(records):
        assert r.document is not None
        groups[_level_count_group(treated_level_count(r.document))].append(leak_present(r.document))
    rows = []
    for group, leaks in groups.items():
        p = wilson(sum(leaks), len(leaks))
        rows.append(
            {
                "treated_levels": group,
                "studies": p.total,
                "leak_studies": p.positive,
                "leak_rate": p.rate,
                "ci95_low": p.ci95_low,
                "ci95_high": p.ci95_high,
            }
        )
    return rows


def _volume_samples(records: Sequence[StudyRecord]) -> dict[str, dict[str, list[float]]]:
    """unit -> leak|no_leak -> cement volumes (ml); studies with a treated body only, and per
    level only bodies of known level (their volume cannot be told apart otherwise)."""
    samples: dict[str, dict[str, list[float]]] = {
        "study": {"leak": [], "no_leak": []},
        "treated_level": {"leak": [], "no_leak": []},
    }
    for r in usable(records):
        assert r.document is not None
        if not treated_level_count(r.document):
            continue
        group = "leak" if leak_present(r.document) else "no_leak"
        samples["study"][group].append(total_cement_volume_ml(r.document))
        attributed = attributed_levels(r.document)
        for level, volume_ml in _level_volumes_ml(r.document).items():
            samples["treated_level"]["leak" if level in attributed else "no_leak"].append(volume_ml)
    return samples


def cement_volume_by_leak(records: Sequence[StudyRecord]) -> list[Row]:
    """Cement volume of leaking vs non-leaking studies and treated levels: median and IQR.

    Columns unit (study: total volume of the study's treated levels | treated_level: one
    level of known level of one study), group (leak|no_leak), n, volume_median_ml,
    volume_q1_ml, volume_q3_ml. Studies without a treated level are left out. Leaking vertebrae hold more
    cement (4.5 vs 3.7 cm³, Venmans 2011; WMD +0.59 ml: clinical-evidence.md §1.4, §5.1).
    """
    rows = []
    for unit, groups in _volume_samples(records).items():
        for group, values in groups.items():
            q1, median, q3 = (
                (float(v) for v in np.percentile(values, [25, 50, 75]))
                if values
                else (None, None, None)
            )
            rows.append(
                {
                    "unit": unit,
                    "group": group,
                    "n": len(values),
                    "volume_median_ml": median,
                    "volume_q1_ml": q1,
                    "volume_q3_ml": q3,
                }
            )
    return rows


def _compare(variable: str, leak: Sequence[float], no_leak: Sequence[float]) -> Row:
    row: Row = {
        "variable": variable,
        "leak_n": len(leak),
        "no_leak_n": len(no_leak),
        "leak_median": float(np.median(leak)) if leak else None,
        "no_leak_median": float(np.median(no_leak)) if no_leak else None,
        "test": "mann_whitney_u_two_sided",
        "u_statistic": None,
        "p_value": None,
        "note": "",
    }
    if min(len(leak), len(no_leak)) < MIN_GROUP_FOR_TEST:
        row["note"] = f"too few (fewer than {MIN_GROUP_FOR_TEST} studies in a group)"
        return row
    result = mannwhitneyu(leak, no_leak, alternative="two-sided")
    row["u_statistic"] = float(result.statistic)
    p_value = float(result.pvalue)
    row["p_value"] = None if math.isnan(p_value) else p_value
    return row


def risk_tests(records: Sequence[StudyRecord]) -> list[Row]:
    """Leak vs no leak compared on cement volume and number of treated levels (Mann-Whitney U).

    Columns variable (study_cement_volume_ml | level_cement_volume_ml |
    study_treated_level_count), leak_n, no_leak_n, leak_median, no_leak_median, test,
    u_statistic, p_value, note ("too few" when a group has fewer than 3 members: then no
    statistic and no p-value). Studies without a treated level are left out.
    """
    samples = _volume_samples(records)
    counts: dict[str, list[float]] = {"leak": [], "no_leak": []}
    for r in usable(records):
        assert r.document is not None
        n_levels = treated_level_count(r.document)
        if n_levels:
            counts["leak" if leak_present(r.document) else "no_leak"].append(n_levels)
    return [
        _compare("study_cement_volume_ml", samples["study"]["leak"], samples["study"]["no_leak"]),
        _compare(
            "level_cement_volume_ml",
            samples["treated_level"]["leak"],
            samples["treated_level"]["no_leak"],
        ),
        _compare("study_treated_level_count", counts["leak"], counts["no_leak"]),
    ]


def volume_samples_ml(records: Sequence[StudyRecord]) -> dict[str, list[float]]:
    """Total cement volume per study (ml), leak vs no_leak, for the box plot."""
    return _volume_samples(records)["study"]
