"""report.html: one self-contained page (inline CSS, base64 PNG key images) that prints on A4."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cementscan.atomic import atomic_path
from cementscan.io.volume import CTVolume
from cementscan.report.key_images import CATEGORY_COLOURS, CATEGORY_LABELS, KeyImage
from cementscan.report.text import PHASE_NAMES, REGION_NAMES, _join, report_text

DISCLAIMER = (
    "Decision support for research use, not a diagnosis. Every finding must be checked on the "
    "images by a radiologist."
)
IDENTIFIER_FIELDS = (
    ("patient_name", "Patient"),
    ("patient_id", "Patient ID"),
    ("patient_birth_date", "Born"),
    ("patient_sex", "Sex"),
    ("study_date", "Study date"),
)

CSS = """
@page { size: A4; margin: 14mm 12mm 16mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 10.5pt;
       color: #111; margin: 0 auto; max-width: 190mm; padding: 8px; line-height: 1.38; }
h1 { font-size: 16pt; margin: 0 0 2px 0; }
h2 { font-size: 12.5pt; border-bottom: 1.5px solid #333; margin: 16px 0 6px 0; padding-bottom: 2px; }
.sub { color: #444; font-size: 9.5pt; margin: 0 0 8px 0; }
.banner { border: 1.5px solid #b35900; background: #fff4e5; padding: 5px 8px; font-weight: bold;
          margin: 8px 0; }
table { border-collapse: collapse; width: 100%; font-size: 9pt; }
th, td { border: 1px solid #999; padding: 2px 5px; text-align: left; vertical-align: top; }
th { background: #e8e8e8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.meta td { border: none; padding: 0 12px 1px 0; }
td.cat { white-space: nowrap; }
ul { margin: 3px 0 3px 0; padding-left: 20px; }
li { margin: 1px 0; }
.impression li { font-weight: bold; }
.unconfirmed { background: #ffe0e0; color: #900; font-weight: bold; padding: 0 3px;
               border-radius: 2px; font-size: 8.5pt; }
.swatch { display: inline-block; width: 11px; height: 11px; border: 1px solid #555;
          vertical-align: middle; margin-right: 3px; }
.legend span.item { display: inline-block; margin: 0 12px 2px 0; font-size: 9pt; }
.images { break-before: page; page-break-before: always; }
.gallery { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 10px; align-items: start; }
figure { margin: 0; break-inside: avoid; page-break-inside: avoid; }
figure.wide { grid-column: 1 / span 2; }
figure img { width: 100%; height: auto; display: block; background: #000; }
figcaption { font-size: 8.5pt; color: #222; }
figcaption b { display: block; }
.footer { margin-top: 14px; border-top: 1px solid #999; font-size: 8.5pt; color: #444; }
@media print { body { max-width: none; padding: 0; } a { color: inherit; text-decoration: none; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buf, "PNG", optimize=False
    )
    return buf.getvalue()


def ct_metadata_from_volumes(volumes: Sequence[CTVolume]) -> dict[str, Any]:
    """The header fields of report.html from the volumes' source metadata."""
    series = []
    for v in volumes:
        s = v.source
        series.append(
            {
                "manufacturer": s.manufacturer,
                "kvp": s.kvp,
                "convolution_kernel": s.convolution_kernel,
                "slice_thickness_mm": s.slice_thickness_mm,
                "series_description": s.series_description,
                "contrast_agent": s.contrast_agent,
            }
        )
    first = volumes[0].source if volumes else None
    meta: dict[str, Any] = {"series": series}
    for key, _ in IDENTIFIER_FIELDS:
        meta[key] = getattr(first, key, None) if first is not None else None
    return meta


def _header(doc: dict[str, Any], meta: dict[str, Any], show_identifiers: bool) -> str:
    rows = []
    if show_identifiers:
        ids = [(label, meta.get(key)) for key, label in IDENTIFIER_FIELDS if meta.get(key)]
        rows.append(" &nbsp; ".join(f"<b>{_e(k)}:</b> {_e(v)}" for k, v in ids) or "no identifiers")
    else:
        rows.append("<i>De-identified report (patient and study identifiers not shown).</i>")
    series_meta = meta.get("series", [])
    lines = []
    for n, inp in enumerate(doc.get("inputs", [])):
        sm = series_meta[n] if n < len(series_meta) else {}
        thick = inp.get("slice_thickness_mm") or sm.get("slice_thickness_mm")
        thick = thick or (inp.get("spacing_mm") or [None] * 3)[2]
        scanner = (
            " ".join(
                str(x)
                for x in (
                    sm.get("manufacturer"),
                    f"{sm['kvp']:.0f} kVp" if sm.get("kvp") else None,
                    sm.get("convolution_kernel"),
                )
                if x
            )
            or "scanner not recorded"
        )
        cov = _join([REGION_NAMES.get(r, r) for r in inp.get("coverage", [])]) or "unknown"
        desc = sm.get("series_description")
        lines.append(
            f"<tr><td><b>Series {n + 1}</b>{(' – ' + _e(desc)) if desc else ''}</td>"
            f"<td>{_e(scanner)}</td><td>slice {float(thick):.1f} mm</td>"
            f"<td>{_e(PHASE_NAMES.get(inp.get('contrast_phase', 'unknown'), 'unknown'))}</td>"
            f"<td>covers {_e(cov)}</td></tr>"
            if thick
            else f"<tr><td><b>Series {n + 1}</b></td><td>{_e(scanner)}</td><td>slice ?</td>"
            f"<td>{_e(inp.get('contrast_phase'))}</td><td>covers {_e(cov)}</td></tr>"
        )
    sw = doc.get("software", {})
    return (
        "<header><h1>CT after vertebral augmentation: cement report</h1>"
        f"<p class='sub'>{_e(sw.get('name', 'cementscan'))} {_e(sw.get('version', ''))} · "
        f"{_e(doc.get('schema', ''))}</p>"
        f"<p class='sub'>{rows[0]}</p>"
        f"<table class='meta'>{''.join(lines)}</table>"
        f"<div class='banner'>{_e(DISCLAIMER)}</div></header>"
    )


def _ul(lines: Sequence[str], cls: str = "") -> str:
    if not lines:
        return ""
    c = f" class='{cls}'" if cls else ""
    return f"<ul{c}>" + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>"


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _hex(cat: str) -> str:
    r, g, b = (int(255 * c) for c in CATEGORY_COLOURS.get(cat, (1.0, 1.0, 1.0)))
    return f"#{r:02x}{g:02x}{b:02x}"


def _findings_table(doc: dict[str, Any]) -> str:
    rows = []
    for f in sorted(doc.get("findings", []), key=lambda f: int(f["id"])):
        cat = f["category"]
        colour = _hex(cat)
        level = f.get("level") or (
            f"{f['level_offset']:+d} from treated" if f.get("level_offset") is not None else "–"
        )
        vol = float(f.get("volume_ml") or 0.0)
        rows.append(
            "<tr>"
            f"<td class='num'>{f['id']}</td>"
            f"<td class='cat'><span class='swatch' style='background:{colour}'></span>"
            f"{_e(CATEGORY_LABELS.get(cat, cat))}"
            f"{' (prior)' if f.get('category_basis') == 'prior' else ''}</td>"
            f"<td>{_e(f.get('yeom_type') or '–')}</td><td>{_e(level)}</td>"
            f"<td>{_e(f.get('side') or '–')}</td><td>{_e(f.get('lung_zone') or '–')}</td>"
            f"<td>{_e(f.get('shape') or '–')}</td>"
            f"<td class='num'>{vol:.2f}</td>"
            f"<td class='num'>{_fmt(float(f.get('length_mm') or 0.0), 0)}</td>"
            f"<td class='num'>{float(f.get('confidence', 0.0)):.2f}</td>"
            "</tr>"
        )
    if not rows:
        return "<p>No cement found.</p>"
    head = (
        "<tr><th>#</th><th>Category</th><th>Yeom</th><th>Level</th><th>Side</th><th>Zone</th>"
        "<th>Shape</th><th>Volume (mL)</th><th>Length (mm)</th><th>Confidence</th></tr>"
    )
    return f"<table class='findings'>{head}{''.join(rows)}</table>"


def _management(doc: dict[str, Any]) -> str:
    m = doc.get("management", {})
    text = str(m.get("suggestion", "")).strip()
    # One statement per line; the management stage marks each unconfirmed one "[UNCONFIRMED]".
    parts = [p.strip() for p in re.split(r"(?<=[.\]])\s+(?=[A-Z])", text) if p.strip()]
    items = []
    for p in parts:
        esc = _e(p).replace("[UNCONFIRMED]", "<span class='unconfirmed'>UNCONFIRMED</span>")
        items.append(f"<li>{esc}</li>")
    symptoms = (m.get("inputs") or {}).get("symptoms")
    sym = (
        "symptoms not given"
        if symptoms is None
        else "asymptomatic"
        if not symptoms
        else "symptoms: " + ", ".join(map(str, symptoms))
    )
    basis = "".join(f"<li>{_e(b)}</li>" for b in m.get("basis", []))
    unconf = m.get("unconfirmed") or []
    unc_html = ""
    if unconf:
        unc_html = (
            "<p><span class='unconfirmed'>UNCONFIRMED</span> evidence (clinical-evidence.md marks "
            "the source unverified):</p>" + _ul([str(u) for u in unconf])
        )
    return (
        f"<p class='sub'>Clinical input: {_e(sym)}.</p><ul>{''.join(items)}</ul>"
        f"<p><b>Sources</b></p><ul>{basis}</ul>{unc_html}"
    )


def _legend() -> str:
    items = "".join(
        f"<span class='item'><span class='swatch' style='background:{_hex(cat)}'></span>"
        f"{_e(lbl)}</span>"
        for cat, lbl in CATEGORY_LABELS.items()
    )
    return f"<div class='legend'><b>Cement colours:</b> {items}</div>"


def _figures(images: Sequence[KeyImage]) -> str:
    out = []
    for img in images:
        data = base64.b64encode(png_bytes(img.rgb)).decode("ascii")
        h, w = img.rgb.shape[:2]
        cls = " class='wide'" if img.kind in ("frontal",) and w > 1.6 * h else ""
        out.append(
            f"<figure{cls} data-kind='{_e(img.kind)}'>"
            f"<img alt='{_e(img.title)}' width='{w}' height='{h}' "
            f"src='data:image/png;base64,{data}'/>"
            f"<figcaption><b>{_e(img.title)}</b>{_e(img.caption)}</figcaption></figure>"
        )
    return "".join(out)


def render_html(
    findings: dict[str, Any],
    images: Sequence[KeyImage],
    *,
    show_identifiers: bool = False,
    ct_metadata: dict[str, Any] | None = None,
) -> str:
    """The report page as a string."""
    meta = ct_metadata or {}
    txt = report_text(findings)
    timings = findings.get("timings_s", {})
    body = [
        _header(findings, meta, show_identifiers),
        "<section><h2>Findings</h2>",
        _ul(txt.findings),
        _ul(txt.negatives),
        "</section><section><h2>Impression</h2>",
        _ul(txt.impression, "impression"),
        "</section><section><h2>Management suggestion</h2>",
        _management(findings),
        "</section><section><h2>Confidence and limitations</h2>",
        _ul(txt.limitations),
        "</section><section><h2>Technique</h2>",
        _ul(txt.technique),
        "</section><section><h2>Findings table</h2>",
        _findings_table(findings),
        "<p class='sub'>Positions are in DICOM patient coordinates (LPS); side is the patient's. "
        "Confidence is calibrated: among findings with confidence ≥ p, at least a fraction p "
        "are right.</p></section>",
    ]
    if images:
        body += [
            "<section class='images'><h2>Key images</h2>",
            "<p class='sub'>Frontal and coronal views: patient's right on the viewer's left. "
            "Sagittal and lateral views: anterior on the viewer's left. Axial views from below "
            "(radiological convention).</p>",
            _legend(),
            "<div class='gallery'>",
            _figures(images),
            "</div>",
            "</section>",
        ]
    if timings:
        body.append(
            "<p class='sub'>Timings: "
            + ", ".join(f"{_e(k)} {float(v):.1f} s" for k, v in timings.items())
            + "</p>"
        )
    body.append(f"<div class='footer'>{_e(DISCLAIMER)}</div>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>cementscan report</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_html_report(
    out_dir: str | Path,
    findings: dict[str, Any],
    key_images: Sequence[KeyImage],
    *,
    show_identifiers: bool = False,
    ct_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write OUT_DIR/report.html atomically and return its path."""
    target = Path(out_dir) / "report.html"
    text = render_html(
        findings, key_images, show_identifiers=show_identifiers, ct_metadata=ct_metadata
    )
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_report_formats(
    out_dir: str | Path,
    findings: dict[str, Any],
    label_maps: Sequence[np.ndarray] | np.ndarray | None,
    volumes: Sequence[CTVolume],
    *,
    pdf: bool,
    show_identifiers: bool,
) -> tuple[list[Path], list[KeyImage]]:
    """Key images, report.html and (``pdf``) report.pdf in OUT_DIR; returns (paths, key images)."""
    from cementscan.report.key_images import key_images as make_key_images
    from cementscan.report.pdf import write_pdf

    out = Path(out_dir)
    images = make_key_images(findings, label_maps, list(volumes))
    paths = [
        write_html_report(
            out,
            findings,
            images,
            show_identifiers=show_identifiers,
            ct_metadata=ct_metadata_from_volumes(volumes),
        )
    ]
    if pdf:
        write_pdf(paths[0], out / "report.pdf")
        paths.append(out / "report.pdf")
    return paths, images
