"""The cohort report: CSV tables, PNG plots and cohort.html, written atomically to OUTDIR/cohort/.

Files and their columns (stable: scripts and tests read them by name). Numbers are written
with up to 6 significant digits; an empty cell means "not defined" (no denominator, or too few
studies for a test). Rates are fractions (0–1) with 95% Wilson intervals.

- ``overview.csv``: studies, ok_studies, failed_studies, patients, treated_levels
  (one row; treated_levels counts vertebrae, i.e. distinct (patient, level)).
- ``leak_rates.csv``: unit, breakdown, group, positive, total, rate, ci95_low, ci95_high
  (unit study|patient|treated_level; breakdown any|category|yeom_type).
- ``pce_incidence.csv``: assessable_studies, pce_studies, incidence, ci95_low, ci95_high
  (one row; among studies whose lungs were assessable).
- ``pce_counts.csv``: pce_count, studies.
- ``distributions.csv``: unit, attribute, value, count, fraction (PCE laterality,
  predominance, zone predominance, most proximal; emboli by side and lung zone; IVC cranial
  extent).
- ``vascular_involvement.csv``: site, assessable_studies, present_studies, incidence,
  ci95_low, ci95_high (sites ivc, right_heart).
- ``leak_by_level_count.csv``: treated_levels, studies, leak_studies, leak_rate, ci95_low,
  ci95_high (treated_levels 0|1|2|>=3).
- ``cement_volume.csv``: unit, group, n, volume_median_ml, volume_q1_ml, volume_q3_ml.
- ``risk_tests.csv``: variable, leak_n, no_leak_n, leak_median, no_leak_median, test,
  u_statistic, p_value, note.
- ``failures.csv``: key, status, error (studies left out of every rate).

Plots (PNG beside the page, also embedded in it as base64): ``pce_counts.png``,
``pce_side_zone.png``, ``volume_vs_leak.png``, ``leak_by_level_count.png``. The meaning of
each table's rows is in the docstring of its function in cohort/stats.py.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cementscan import __version__
from cementscan.atomic import staged_folder
from cementscan.cohort import stats
from cementscan.cohort.records import StudyRecord

REPORT_FOLDER = "cohort"
HTML_NAME = "cohort.html"
DISCLAIMER = (
    "Decision support for research use, not a diagnosis. Incidences are computed from "
    "automated readings; findings must be checked on the images before they are published."
)


@dataclass(frozen=True)
class Table:
    """One CSV file: its columns (in order), a heading for the page and how to compute rows."""

    file_name: str
    columns: tuple[str, ...]
    title: str
    rows: Callable[[Sequence[StudyRecord]], list[stats.Row]]


TABLES = (
    Table(
        "overview.csv",
        ("studies", "ok_studies", "failed_studies", "patients", "treated_levels"),
        "Cohort",
        lambda records: [stats.overview(records)],
    ),
    Table(
        "leak_rates.csv",
        ("unit", "breakdown", "group", "positive", "total", "rate", "ci95_low", "ci95_high"),
        "Leak rate per study, patient and treated level",
        stats.leak_rates,
    ),
    Table(
        "pce_incidence.csv",
        ("assessable_studies", "pce_studies", "incidence", "ci95_low", "ci95_high"),
        "Pulmonary cement embolism (studies with assessable lungs)",
        lambda records: [stats.pce_incidence(records)],
    ),
    Table(
        "pce_counts.csv",
        ("pce_count", "studies"),
        "Number of emboli per PCE-assessable study",
        stats.pce_count_distribution,
    ),
    Table(
        "distributions.csv",
        ("unit", "attribute", "value", "count", "fraction"),
        "Side and zone of PCE; cranial extent of IVC cement",
        stats.distributions,
    ),
    Table(
        "vascular_involvement.csv",
        ("site", "assessable_studies", "present_studies", "incidence", "ci95_low", "ci95_high"),
        "IVC and right-heart cement (studies where assessable)",
        stats.vascular_involvement,
    ),
    Table(
        "leak_by_level_count.csv",
        ("treated_levels", "studies", "leak_studies", "leak_rate", "ci95_low", "ci95_high"),
        "Leak rate by number of treated levels",
        stats.leak_by_level_count,
    ),
    Table(
        "cement_volume.csv",
        ("unit", "group", "n", "volume_median_ml", "volume_q1_ml", "volume_q3_ml"),
        "Cement volume, leak vs no leak",
        stats.cement_volume_by_leak,
    ),
    Table(
        "risk_tests.csv",
        (
            "variable",
            "leak_n",
            "no_leak_n",
            "leak_median",
            "no_leak_median",
            "test",
            "u_statistic",
            "p_value",
            "note",
        ),
        "Leak vs no leak: Mann-Whitney U",
        stats.risk_tests,
    ),
    Table(
        "failures.csv",
        ("key", "status", "error"),
        "Studies not included (failed)",
        stats.failures,
    ),
)


def format_cell(value: Any) -> str:
    """A CSV/HTML cell: '' for None, 6 significant digits for floats, str otherwise."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_cohort_report(records: Sequence[StudyRecord], out_dir: str | Path) -> Path:
    """Write OUTDIR/cohort/ (tables, plots, cohort.html) in one step; returns the page's path.

    The folder is built in a staging folder and replaces a previous OUTDIR/cohort/ only when
    complete, so a reader never sees a half-written report.
    """
    out = Path(out_dir)
    tables = {t.file_name: t.rows(records) for t in TABLES}
    plots = _plots(records, tables)
    with staged_folder(out) as staging:
        folder = staging / REPORT_FOLDER
        folder.mkdir()
        for table in TABLES:
            _write_csv(folder / table.file_name, table.columns, tables[table.file_name])
        for name, png in plots.items():
            (folder / name).write_bytes(png)
        versions = sorted(
            {str(v) for r in stats.usable(records) if (v := r.extra.get("software_version"))}
        )
        (folder / HTML_NAME).write_text(_page(tables, plots, versions), encoding="utf-8")
    return out / REPORT_FOLDER / HTML_NAME


def _write_csv(path: Path, columns: Sequence[str], rows: list[stats.Row]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            if set(row) != set(columns):
                raise ValueError(f"{path.name}: row keys {sorted(row)} differ from the columns")
            writer.writerow(format_cell(row[c]) for c in columns)


# --- plots ----------------------------------------------------------------------------------


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _no_data(axes: Any, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _plots(records: Sequence[StudyRecord], tables: dict[str, list[stats.Row]]) -> dict[str, bytes]:
    plots: dict[str, bytes] = {}

    figure = Figure(figsize=(5.5, 3.2))
    axes = figure.subplots()
    counts = tables["pce_counts.csv"]
    if counts:
        axes.bar([r["pce_count"] for r in counts], [r["studies"] for r in counts], color="#4a6fa5")
        axes.set_xlabel("emboli per study")
        axes.set_ylabel("studies")
    else:
        _no_data(axes, "PCE-assessable studies")
    axes.set_title("Pulmonary cement emboli per study")
    plots["pce_counts.png"] = _png(figure)

    figure = Figure(figsize=(8, 3.2))
    for axes, attribute, title in zip(
        figure.subplots(1, 2),
        ("embolus_side", "embolus_lung_zone"),
        ("Emboli by side", "Emboli by lung zone"),
        strict=True,
    ):
        rows = [
            r
            for r in tables["distributions.csv"]
            if r["unit"] == "embolus" and r["attribute"] == attribute
        ]
        if any(r["count"] for r in rows):
            axes.bar([r["value"] for r in rows], [r["count"] for r in rows], color="#a5574a")
            axes.set_ylabel("emboli")
        else:
            _no_data(axes, "emboli")
        axes.set_title(title)
    plots["pce_side_zone.png"] = _png(figure)

    figure = Figure(figsize=(5, 3.4))
    axes = figure.subplots()
    volumes = stats.volume_samples_ml(records)
    groups = [(label, volumes[key]) for key, label in (("no_leak", "no leak"), ("leak", "leak"))]
    if any(values for _, values in groups):
        axes.boxplot(
            [values for _, values in groups],
            tick_labels=[f"{label}\n(n={len(values)})" for label, values in groups],
        )
        axes.set_ylabel("total cement volume per study (ml)")
    else:
        _no_data(axes, "studies with a treated level")
    axes.set_title("Cement volume vs leakage")
    plots["volume_vs_leak.png"] = _png(figure)

    figure = Figure(figsize=(5, 3.2))
    axes = figure.subplots()
    rows = tables["leak_by_level_count.csv"]
    if any(r["studies"] for r in rows):
        axes.bar(
            [r["treated_levels"] for r in rows],
            [100 * (r["leak_rate"] or 0.0) for r in rows],
            color="#5a8f5a",
        )
        axes.set_xlabel("treated levels per study")
        axes.set_ylabel("studies with a leak (%)")
        axes.set_ylim(0, 100)
    else:
        _no_data(axes, "studies")
    axes.set_title("Leak rate by number of treated levels")
    plots["leak_by_level_count.png"] = _png(figure)
    return plots


# --- page -----------------------------------------------------------------------------------

CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #111;
       margin: 0 auto; max-width: 210mm; padding: 8px; line-height: 1.35; }
h1 { font-size: 16pt; margin: 0 0 2px 0; }
h2 { font-size: 12.5pt; border-bottom: 1.5px solid #333; margin: 16px 0 6px 0; }
.banner { border: 1.5px solid #b35900; background: #fff4e5; padding: 5px 8px;
          font-weight: bold; margin: 8px 0; }
table { border-collapse: collapse; font-size: 9pt; margin: 4px 0; }
th, td { border: 1px solid #999; padding: 2px 5px; text-align: left; }
th { background: #e8e8e8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 6px 0; } img { max-width: 100%; }
.files { color: #444; font-size: 9pt; }
"""


def _percent_ci(rate: float | None, low: float | None, high: float | None) -> str:
    if rate is None or low is None or high is None:
        return "not defined (no studies)"
    return f"{100 * rate:.1f}% (95% CI {100 * low:.1f}–{100 * high:.1f}%)"


def _html_table(columns: Sequence[str], rows: list[stats.Row]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row[c]
            css = ' class="num"' if isinstance(value, int | float) else ""
            cells.append(f"<td{css}>{html.escape(format_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(columns)}">none</td></tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f'<figcaption>{html.escape(caption)} (<a href="{name}">{name}</a>)</figcaption></figure>'
    )


def _page(
    tables: dict[str, list[stats.Row]], plots: dict[str, bytes], versions: Sequence[str]
) -> str:
    overview = tables["overview.csv"][0]
    pce = tables["pce_incidence.csv"][0]
    by_site = {r["site"]: r for r in tables["vascular_involvement.csv"]}
    leak_any = {
        r["unit"]: r
        for r in tables["leak_rates.csv"]
        if r["breakdown"] == "any" and r["group"] == "any"
    }
    key_lines = [
        f"Any leak, per patient: {leak_any['patient']['positive']}/"
        f"{leak_any['patient']['total']}, "
        + _percent_ci(
            leak_any["patient"]["rate"],
            leak_any["patient"]["ci95_low"],
            leak_any["patient"]["ci95_high"],
        ),
        f"Any leak, per treated level: {leak_any['treated_level']['positive']}/"
        f"{leak_any['treated_level']['total']}, "
        + _percent_ci(
            leak_any["treated_level"]["rate"],
            leak_any["treated_level"]["ci95_low"],
            leak_any["treated_level"]["ci95_high"],
        ),
        f"Pulmonary cement embolism: {pce['pce_studies']}/{pce['assessable_studies']} studies "
        "with assessable lungs, "
        + _percent_ci(pce["incidence"], pce["ci95_low"], pce["ci95_high"]),
    ]
    for site, label in (("ivc", "IVC cement"), ("right_heart", "Right-heart cement")):
        row = by_site[site]
        key_lines.append(
            f"{label}: {row['present_studies']}/{row['assessable_studies']} studies where "
            "assessable, " + _percent_ci(row["incidence"], row["ci95_low"], row["ci95_high"])
        )
    captions = {
        "pce_counts.png": "Emboli per PCE-assessable study",
        "pce_side_zone.png": "Emboli by side and by lung zone",
        "volume_vs_leak.png": "Total cement volume per study, leak vs no leak",
        "leak_by_level_count.png": "Leak rate by number of treated levels",
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>cementscan cohort report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>cementscan cohort report</h1>",
        f'<div class="banner">{html.escape(DISCLAIMER)}</div>',
        f"<p>{overview['ok_studies']} studies of {overview['patients']} patients entered the "
        f"statistics; {overview['failed_studies']} of {overview['studies']} recorded studies "
        "failed and are listed at the end. Studies analysed with cementscan "
        f"{html.escape(', '.join(versions) or '–')}; report by cementscan "
        f"{html.escape(__version__)}.</p>",
        "<h2>Key figures</h2><ul>",
        *(f"<li>{html.escape(line)}</li>" for line in key_lines),
        "</ul>",
        "<h2>Plots</h2>",
        *(_figure(name, png, captions.get(name, name)) for name, png in plots.items()),
    ]
    for table in TABLES:
        parts += [
            f"<h2>{html.escape(table.title)}</h2>",
            f'<p class="files">{html.escape(table.file_name)}</p>',
            _html_table(table.columns, tables[table.file_name]),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
