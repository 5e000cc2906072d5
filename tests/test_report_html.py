"""report.html / key images / report text on findings built from phantom truth (issue #5)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cementscan.clinical import suggest_management
from cementscan.findings import validate_findings
from cementscan.findings.model import (
    IvcSummary,
    PceSummary,
    RegionSummary,
    Summary,
    TreatedLevel,
)
from cementscan.io.volume import CTVolume
from cementscan.report.html import render_html, write_html_report, write_report_formats
from cementscan.report.key_images import CATEGORY_COLOURS, KeyImage, key_images
from cementscan.report.pdf import find_chromium, run_chromium
from cementscan.report.text import report_text
from cementscan.synth import Phantom, make_phantom, preset_spec

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- findings from phantom truth


def _summary_dataclass(s: dict[str, Any]) -> Summary:
    return Summary(
        treated_levels=tuple(TreatedLevel(**t) for t in s["treated_levels"]),
        leak_present=s["leak_present"],
        leaks=dict(s["leaks"]),
        ivc=IvcSummary(**s["ivc"]),
        right_heart=RegionSummary(**s["right_heart"]),
        pce=PceSummary(**s["pce"]),
    )


def _bbox(vol: CTVolume, mask: np.ndarray, centroid: list[float]) -> list[list[float]]:
    if not mask.any():
        c = [float(v) for v in centroid]
        return [[v - 1.0 for v in c], [v + 1.0 for v in c]]
    idx = np.argwhere(mask)
    corners = vol.index_to_lps(np.array([idx.min(0) - 0.5, idx.max(0) + 0.5], float))
    return [corners.min(0).round(2).tolist(), corners.max(0).round(2).tolist()]


def phantom_findings(
    ph: Phantom, series: list[int] | None = None, symptoms: tuple[str, ...] | None = ()
) -> tuple[dict[str, Any], list[np.ndarray], list[CTVolume]]:
    """A findings.json dict (schema-valid) from a phantom's truth, restricted to ``series``."""
    keep = list(range(len(ph.series))) if series is None else list(series)
    new_index = {old: new for new, old in enumerate(keep)}
    inputs, maps, vols = [], [], []
    for n in keep:
        s = ph.series[n]
        ct = s.ct
        inputs.append(
            {
                "path": f"ct_{n}.nii.gz",
                "format": "nifti",
                "series_uid": ct.source.series_uid,
                "shape": list(ct.shape),
                "spacing_mm": [float(v) for v in ct.spacing_mm],
                "modality": "CT",
                "contrast_phase": "native" if ct.source.contrast_agent is None else "portal_venous",
                "coverage": list(s.coverage),
                "orientation": ct.orientation_code(),
                "slice_thickness_mm": ct.source.slice_thickness_mm,
            }
        )
        vols.append(ct)
    findings = []
    kept_ids = set()
    for o in ph.objects:
        owners = [i for i in o.series_indices if i in new_index]
        if not owners:
            continue
        primary = o.primary_series if o.primary_series in new_index else owners[0]
        s = ph.series[primary]
        mask = s.truth_labels == o.id
        length = float(o.length_mm or 0.0)
        diam = 2.0 * float(np.sqrt(o.volume_ml * 1000.0 / (np.pi * max(length, 1.0))))
        kept_ids.add(o.id)
        findings.append(
            {
                "id": o.id,
                "series_index": new_index[primary],
                "category": o.category,
                "category_basis": "anatomy",
                "yeom_type": o.yeom_type,
                "centroid_lps_mm": [round(c, 2) for c in o.centroid_lps_mm],
                "bbox_lps_mm": _bbox(s.ct, mask, list(o.centroid_lps_mm)),
                "volume_ml": round(o.volume_ml, 4),
                "length_mm": round(length, 1),
                "max_diameter_mm": round(diam, 1),
                "shape": o.shape_kind,
                "mean_hu": o.hu,
                "max_hu": o.hu,
                "level": o.level,
                "level_offset": None,
                "side": o.side,
                "lung_zone": o.lung_zone,
                "lobe": None,
                "central": o.central,
                "connected_to": o.connected_to,
                "canal_compromise_pct": None,
                "confidence": 0.9,
            }
        )
    for f in findings:
        if f["connected_to"] not in kept_ids:
            f["connected_to"] = None
    summary = json.loads(json.dumps(ph.summary))
    summary["ivc"] = {
        "cranial_extent_level": None,
        "caudal_extent_level": None,
        "length_mm": None,
        "extends_beyond_fov": None,
        **summary["ivc"],
    }
    cov = {r for i in inputs for r in i["coverage"]}
    if "chest" not in cov:  # the lungs and heart were not scanned: absence cannot be stated
        summary["pce"] = {**PceSummary(assessable=False, present=None).__dict__}
        summary["right_heart"] = {"assessable": False, "present": None}
        summary["leak_present"] = bool(summary["leaks"])
    mgmt = suggest_management(_summary_dataclass(summary), symptoms)
    doc = {
        "schema": "cementscan.findings/1",
        "software": {"name": "cementscan", "version": "test"},
        "inputs": inputs,
        "skipped_series": [],
        "anatomy": {
            "levels": ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"],
            "level_anchor": "sacrum",
            "level_confidence": 0.9,
        },
        "findings": findings,
        "summary": summary,
        "management": {
            "suggestion": mgmt.suggestion,
            "basis": list(mgmt.basis),
            "inputs": mgmt.inputs,
            "unconfirmed": list(mgmt.unconfirmed),
        },
        "warnings": [],
        "timings_s": {"load": 0.1},
    }
    validate_findings(doc)
    maps = [
        ph.series[n].truth_labels * np.isin(ph.series[n].truth_labels, list(kept_ids)) for n in keep
    ]
    return doc, maps, vols


@pytest.fixture(scope="module")
def reference() -> Phantom:
    return make_phantom(preset_spec("reference-case", seed=0, slice_mm=3.0, pixel_mm=2.0))


@pytest.fixture(scope="module")
def negative() -> Phantom:
    return make_phantom(preset_spec("negative", seed=0, slice_mm=3.0, pixel_mm=2.0))


@pytest.fixture(scope="module")
def reference_images(reference: Phantom) -> tuple[dict[str, Any], list[KeyImage]]:
    doc, maps, vols = phantom_findings(reference)
    return doc, key_images(doc, maps, vols)


def _words(doc: dict[str, Any]) -> str:
    t = report_text(doc)
    return " ".join(t.findings + t.negatives + t.impression + t.limitations)


# ---------------------------------------------------------------- words


def test_reference_case_words(reference: Phantom) -> None:
    doc, _, _ = phantom_findings(reference)
    text = _words(doc)
    assert "vertebral augmentation at L4–L5" in text
    assert "the right aspect of the L4 and L5 vertebral bodies" in text
    assert re.search(
        r"from the paravertebral venous plexus into the inferior vena cava, extending "
        r"cranially to the level of L1",
        text,
    )
    assert "Yeom type S" in text
    assert re.search(
        r"\d+ mm in length from L4 to L1 and is continuous with the cement tract", text
    )
    assert re.search(
        r"7 linear and nodular hyperdense foci along pulmonary arterial branches, predominantly "
        r"in the lower zone of the right lung \(5 right, 2 left\), consistent with pulmonary "
        r"cement embolism",
        text,
    )
    assert "cannot be excluded" not in text
    impression = report_text(doc).impression
    assert 2 <= len(impression) <= 4
    page = render_html(doc, [])
    assert "no treatment besides clinical follow-up" in page  # asymptomatic, peripheral: Krueger
    assert "Krueger" in page
    assert "not a diagnosis" in page


def test_free_ivc_fragment_and_right_heart_prompt(reference: Phantom) -> None:
    doc, _, _ = phantom_findings(reference)
    for f in doc["findings"]:
        if f["category"] == "ivc":
            f["connected_to"] = None  # cut the tract: the IVC piece is now a free fragment
    doc["summary"]["right_heart"]["present"] = True
    text = _words(doc)
    assert "free fragment" in text
    assert "continuous with the cement tract" not in text
    assert "pericardial effusion" in text


def test_negative_report_says_what_was_covered(negative: Phantom, reference: Phantom) -> None:
    doc, _, _ = phantom_findings(negative)
    text = _words(doc)
    assert "no cement outside the vertebrae" in text
    assert "No cement in the intervertebral discs" in text and "pulmonary arteries" in text
    assert "The scan covered the chest, abdomen, thoracic spine, lumbar spine and pelvis." in text
    assert "portal venous" in text  # the contrast phase is a stated limitation
    # Treated vertebrae and no leak: the reference case with its leaks removed.
    ref, _, _ = phantom_findings(reference)
    ref["findings"] = [f for f in ref["findings"] if f["category"] == "intravertebral"]
    ref["summary"].update(leak_present=False, leaks={})
    ref["summary"]["ivc"].update(present=False, cranial_extent_level=None, length_mm=None)
    ref["summary"]["pce"].update(
        present=False,
        count=0,
        laterality="none",
        predominance="none",
        zone_predominance="none",
        most_proximal="none",
    )
    words = _words(ref)
    assert "No cement outside the treated vertebrae." in words
    assert "inferior vena cava" in words and "pulmonary arteries" in words


def test_lumbar_only_cannot_exclude_pce(reference: Phantom) -> None:
    doc, _, _ = phantom_findings(reference, series=[0])
    text = _words(doc)
    assert "pulmonary cement embolism cannot be excluded" in text
    assert "consistent with pulmonary cement embolism" not in text
    assert "inferior vena cava" in text
    assert "Not assessable on this scan: right heart and lungs." in text


def test_ctpa_window_pitfall_and_level_confidence(reference: Phantom) -> None:
    doc, _, _ = phantom_findings(reference)
    doc["inputs"][1]["contrast_phase"] = "arterial"
    doc["anatomy"].update(level_anchor="last_rib", level_confidence=0.4)
    text = _words(doc)
    assert "easy to miss in a soft-tissue window" in text
    assert "numbering uncertain" in text and "last rib" in text


# ---------------------------------------------------------------- images


def _colour_columns(rgb: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    target = np.asarray(colour) * 255
    close = np.abs(rgb.astype(float) - target).max(axis=2) < 40
    return np.nonzero(close)[1]


def test_key_images_kinds(reference_images: tuple[dict[str, Any], list[KeyImage]]) -> None:
    doc, images = reference_images
    kinds = [i.kind for i in images]
    for kind in ("coronal_mip", "sagittal_mip", "frontal", "lateral", "surface_3d"):
        assert kind in kinds
    axial_ids = {i.finding_ids[0] for i in images if i.kind == "axial"}
    leaks = {f["id"] for f in doc["findings"] if f["category"] != "intravertebral"}
    assert axial_ids == leaks
    for img in images:
        assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
        assert img.rgb.std() > 5  # not blank


@pytest.mark.parametrize("orientation", ["LPS", "RAS"])
def test_frontal_projection_orientation(reference: Phantom, orientation: str) -> None:
    ph = reference
    if orientation != "LPS":  # the same patient stored in another index order
        ph = make_phantom(
            preset_spec("reference-case", seed=0, slice_mm=3.0, pixel_mm=2.0, orientation="RAS")
        )
    doc, maps, vols = phantom_findings(ph, series=[0])
    images = key_images(doc, maps, vols)
    frontal = next(i for i in images if i.kind == "frontal")
    for cat in ("ivc", "intravertebral"):
        cols = _colour_columns(frontal.rgb, CATEGORY_COLOURS[cat])
        assert cols.size > 20, cat
        # Right-sided cement on the viewer's left half (patient's right on the viewer's left).
        assert np.median(cols) < frontal.rgb.shape[1] / 2, cat
    lateral = next(i for i in images if i.kind == "lateral")
    ivc = np.median(_colour_columns(lateral.rgb, CATEGORY_COLOURS["ivc"]))
    body = np.median(_colour_columns(lateral.rgb, CATEGORY_COLOURS["intravertebral"]))
    assert ivc < body  # the IVC lies anterior to the vertebral bodies: anterior on the left


# ---------------------------------------------------------------- HTML in a browser


@pytest.fixture(scope="module")
def chromium() -> str:
    if find_chromium() is None:
        script = REPO / "tools" / "install-test-deps.sh"
        subprocess.run(["sh", str(script)], check=False, capture_output=True, timeout=600)
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed and tools/install-test-deps.sh could not install it")
    return exe


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = document.createElement('pre');
  out.id = 'imgcheck';
  out.textContent = JSON.stringify(imgs.map(function (i) {
    return [i.complete, i.naturalWidth, i.naturalHeight]; }));
  document.body.appendChild(out);
});
</script>"""


def test_html_renders_every_image(
    tmp_path: Path, reference_images: tuple[dict[str, Any], list[KeyImage]], chromium: str
) -> None:
    doc, images = reference_images
    page = write_html_report(tmp_path, doc, images)
    text = page.read_text()
    assert "http://" not in text and "https://" not in text.replace("https://cementscan", "")
    assert "@page" in text and "page-break-before" in text
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>"))
    result = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    found = re.search(r"<pre id=\"imgcheck\">(.*?)</pre>", result.stdout, flags=re.S)
    assert found, result.stderr[-2000:]
    states = json.loads(found.group(1))
    assert len(states) == len(images)
    assert all(done and w > 0 and h > 0 for done, w, h in states), states
    shot = tmp_path / "shot.png"
    run_chromium(["--screenshot=" + str(shot), "--window-size=1200,3000", page.as_uri()])
    assert shot.is_file() and shot.stat().st_size > 10000


def test_identifiers_only_on_request(reference: Phantom, tmp_path: Path) -> None:
    doc, _, _ = phantom_findings(reference)
    meta = {"patient_name": "DOE^JANE", "patient_id": "P123", "series": []}
    assert "DOE^JANE" not in render_html(doc, [], ct_metadata=meta)
    assert "De-identified" in render_html(doc, [], ct_metadata=meta)
    assert "DOE^JANE" in render_html(doc, [], ct_metadata=meta, show_identifiers=True)


def test_write_report_formats_with_pdf(negative: Phantom, tmp_path: Path) -> None:
    doc, maps, vols = phantom_findings(negative)
    paths, images = write_report_formats(
        tmp_path, doc, maps, vols, pdf=True, show_identifiers=False
    )
    assert [p.name for p in paths] == ["report.html", "report.pdf"]
    assert paths[1].read_bytes().startswith(b"%PDF")
    assert images and not list(tmp_path.glob(".report*"))  # no temporary files left behind


def test_pdf_fallback_without_chromium(
    reference: Phantom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cementscan.report.pdf import write_pdf

    doc, _, _ = phantom_findings(reference)
    page = write_html_report(tmp_path, doc, [])
    monkeypatch.setenv("CEMENTSCAN_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert write_pdf(page, tmp_path / "report.pdf") == "matplotlib"
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")


def test_install_script_is_quiet_when_present() -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium absent: the script would install it")
    result = subprocess.run(
        ["sh", str(REPO / "tools" / "install-test-deps.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert shutil.which("chromium")
