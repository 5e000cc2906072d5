"""Summary stage: the reference case against its truth, coverage-dependent absence, merging two
series of one study, the IVC's field-of-view edge and predominance rules."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pytest
from helpers_classify import truth_anatomy, truth_candidates

from cementscan.classify import classify_candidates
from cementscan.findings import Finding
from cementscan.pipeline import analyze
from cementscan.summary import SeriesCoverage, duplicates, series_coverage, summarise
from cementscan.synth import make_phantom, preset_spec
from cementscan.synth.phantom import Phantom


@pytest.fixture(scope="module")
def reference() -> tuple[Phantom, list[Finding], list[SeriesCoverage]]:
    phantom = make_phantom(preset_spec("reference-case", seed=0, slice_mm=3.0, pixel_mm=2.0))
    findings: list[Finding] = []
    coverage = []
    for n, series in enumerate(phantom.series):
        anatomy = truth_anatomy(phantom, n)
        found, _ = classify_candidates(
            truth_candidates(series), series.ct, anatomy, n, len(findings) + 1
        )
        findings.extend(found)
        coverage.append(series_coverage(n, series.ct, anatomy))
    return phantom, findings, coverage


def test_reference_case_summary_matches_the_truth(
    reference: tuple[Phantom, list[Finding], list[SeriesCoverage]],
) -> None:
    phantom, findings, coverage = reference
    mine = asdict(summarise(findings, coverage))
    truth = phantom.summary
    assert [t["level"] for t in mine["treated_levels"]] == ["L4", "L5"]
    for got, want in zip(mine["treated_levels"], truth["treated_levels"], strict=True):
        assert got["cement_volume_ml"] == pytest.approx(want["cement_volume_ml"], rel=0.3)
    assert mine["leak_present"] is True
    assert mine["leaks"] == truth["leaks"] == {"paravertebral_vein": 1, "ivc": 1}
    for key in ("assessable", "present", "cranial_extent_level", "caudal_extent_level",
                "extends_beyond_fov"):  # fmt: skip
        assert mine["ivc"][key] == truth["ivc"][key], key
    assert mine["ivc"]["cranial_extent_level"] == "L1"
    assert mine["ivc"]["length_mm"] == pytest.approx(truth["ivc"]["length_mm"], rel=0.15)
    assert mine["right_heart"] == truth["right_heart"]
    for key in ("assessable", "present", "count", "laterality", "predominance",
                "zone_predominance", "most_proximal"):  # fmt: skip
        assert mine["pce"][key] == truth["pce"][key], key
    assert (mine["pce"]["count"], mine["pce"]["laterality"]) == (7, "bilateral")
    assert (mine["pce"]["predominance"], mine["pce"]["zone_predominance"]) == ("right", "lower")


def test_cast_seen_in_two_overlapping_series_is_counted_once(
    reference: tuple[Phantom, list[Finding], list[SeriesCoverage]],
) -> None:
    _, findings, coverage = reference
    ivc = [f for f in findings if f.category == "ivc"]
    assert {f.series_index for f in ivc} == {0, 1}  # both series hold part of the cast
    dupes = duplicates(findings, coverage)
    assert len(dupes) == 1 and all(by_id.category == "ivc" for by_id in
                                   (next(f for f in findings if f.id == i) for i in dupes))  # fmt: skip
    # Without a shared frame of reference nothing can be matched by position.
    apart = [replace(c, frame_of_reference_uid=f"for-{c.series_index}") for c in coverage]
    assert summarise(findings, apart).leaks["ivc"] == 2


def test_lumbar_ct_alone_cannot_assess_the_lungs_or_heart(
    reference: tuple[Phantom, list[Finding], list[SeriesCoverage]],
) -> None:
    _, findings, coverage = reference
    lumbar = [f for f in findings if f.series_index == 0]
    summary = summarise(lumbar, coverage[:1])
    assert (summary.pce.assessable, summary.pce.present, summary.pce.count) == (False, None, 0)
    assert (summary.right_heart.assessable, summary.right_heart.present) == (False, None)
    assert summary.ivc.present is True and summary.ivc.cranial_extent_level == "L1"


def test_nothing_is_assessable_without_coverage() -> None:
    summary = summarise([], [])
    assert summary.leak_present is False and summary.treated_levels == ()
    assert (summary.ivc.assessable, summary.ivc.present) == (False, None)
    assert (summary.pce.assessable, summary.pce.present) == (False, None)
    covered = SeriesCoverage(0, ("chest", "abdomen"), (0.0, 400.0), 3.0)
    summary = summarise([], [covered])
    assert (summary.ivc.present, summary.right_heart.present, summary.pce.present) == (
        False,
        False,
        False,
    )
    dense = replace(covered, dense_contrast_veins=("ivc",))
    assert (summarise([], [dense]).ivc.assessable, summarise([], [dense]).ivc.present) == (
        False,
        None,
    )


def test_cast_reaching_the_top_of_the_scan_extends_beyond_the_field_of_view(
    reference: tuple[Phantom, list[Finding], list[SeriesCoverage]],
) -> None:
    _, findings, coverage = reference
    lumbar = [f for f in findings if f.series_index == 0]
    top = max(f.bbox_lps_mm[1][2] for f in lumbar if f.category == "ivc")
    cut = replace(coverage[0], z_range_mm=(coverage[0].z_range_mm[0], top + 1.5))
    assert summarise(lumbar, [cut]).ivc.extends_beyond_fov is True
    assert summarise(lumbar, coverage[:1]).ivc.extends_beyond_fov is False


def _embolus(n: int, side: str, zone: str | None, central: bool = False) -> Finding:
    return Finding(
        id=n, series_index=0, category="pulmonary_artery", category_basis="anatomy",
        centroid_lps_mm=(float(n) * 20, 0.0, 0.0), bbox_lps_mm=((0.0,) * 3, (1.0,) * 3),
        volume_ml=0.05, length_mm=10.0 + n, max_diameter_mm=2.0, shape="linear", mean_hu=2000,
        max_hu=2500, side=side, confidence=0.9, lung_zone=zone, central=central,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sides", "zones", "laterality", "predominance", "zone_predominance"),
    [
        (["right", "right", "left"], ["lower", "lower", "upper"], "bilateral", "right", "lower"),
        (
            ["right", "right", "right", "left", "left"],
            ["lower", "lower", "middle", "middle", "upper"],
            "bilateral",
            "balanced",
            "diffuse",
        ),
        (["left", "left"], [None, None], "left", "left", "none"),
        (["right", "left", "left", "left", "left"], ["upper"] * 5, "bilateral", "left", "upper"),
    ],
)
def test_predominance_needs_two_to_one(
    sides: list[str], zones: list[str | None], laterality: str, predominance: str,
    zone_predominance: str,
) -> None:  # fmt: skip
    emboli = [_embolus(n + 1, s, z) for n, (s, z) in enumerate(zip(sides, zones, strict=True))]
    pce = summarise(emboli, [SeriesCoverage(0, ("chest",), (0.0, 400.0), 3.0)]).pce
    assert (pce.count, pce.laterality, pce.predominance, pce.zone_predominance) == (
        len(sides),
        laterality,
        predominance,
        zone_predominance,
    )
    assert pce.most_proximal == "peripheral" and pce.max_length_mm == 10.0 + len(sides)


def test_dense_svc_makes_the_right_heart_not_assessable_with_a_warning(shared_data: Path) -> None:
    """chest-cta: undiluted contrast fills the SVC and streams into the right atrium, where the
    detector drops what it finds; the summary cannot call the right heart clear (DESIGN.md §4)."""
    result = analyze([shared_data / "chest-cta" / "ct.nii.gz"])
    document = result.document
    assert document.findings == ()
    assert asdict(document.summary.right_heart) == {"assessable": False, "present": None}
    assert any("right atrium" in w and "not assessable" in w for w in document.warnings)
