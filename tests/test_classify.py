"""Classify stage on phantoms with truth-derived candidates: categories, splitting, links, sides,
levels, degradation without anatomy, schema validity and speed."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from helpers_classify import match_objects, random_spec, truth_anatomy, truth_candidates

from cementscan.anatomy.grid import WorkGrid
from cementscan.anatomy.model import Anatomy, Vertebra
from cementscan.cement.candidates import Candidate, Candidates
from cementscan.classify import classify_candidates
from cementscan.classify.placement import MIDLINE_HALF_WIDTH_MM, bone_midline, side_of
from cementscan.findings import (
    AnatomyRecord,
    Finding,
    FindingsDocument,
    InputRecord,
    Management,
    validate_findings,
)
from cementscan.io.volume import CTVolume, SourceInfo
from cementscan.summary import series_coverage, summarise
from cementscan.synth import PhantomSpec, make_phantom, preset_spec
from cementscan.synth.phantom import Phantom
from cementscan.synth.truth import TruthObject

PRESETS = ("reference-case", "canal-leak", "all-leaks", "thoracic-azygos", "right-heart")
RANDOM_SEEDS = (3, 11)


def _phantom(name: str) -> Phantom:
    return make_phantom(preset_spec(name, seed=0, slice_mm=3.0, pixel_mm=2.0))


@pytest.fixture(scope="module")
def phantoms() -> dict[str, Phantom]:
    out = {name: _phantom(name) for name in PRESETS}
    for seed in RANDOM_SEEDS:
        out[f"random-{seed}"] = make_phantom(random_spec(seed))
    return out


Run = tuple[list[tuple[Finding, ...]], list[np.ndarray], list[Anatomy]]


@pytest.fixture(scope="module")
def runs(phantoms: dict[str, Phantom]) -> dict[str, Run]:
    """Every phantom classified with its truth anatomy and truth candidates."""
    out: dict[str, Run] = {}
    for name, phantom in phantoms.items():
        findings, labels, anatomies = [], [], []
        first = 1
        for n, series in enumerate(phantom.series):
            anatomy = truth_anatomy(phantom, n)
            found, lab = classify_candidates(truth_candidates(series), series.ct, anatomy, n, first)
            first += len(found)
            findings.append(found)
            labels.append(lab)
            anatomies.append(anatomy)
        out[name] = (findings, labels, anatomies)
    return out


def _matches(phantom: Phantom, run: Run) -> list[tuple[TruthObject, Finding]]:
    """(truth object, finding with most of its voxels) in the object's primary series."""
    findings, labels, _ = run
    out = []
    objects = {o.id: o for o in phantom.objects}
    for n in range(len(phantom.series)):
        by_id = {f.id: f for f in findings[n]}
        for obj_id, (fid, _) in match_objects(phantom, n, labels[n]).items():
            if objects[obj_id].primary_series == n:
                out.append((objects[obj_id], by_id[fid]))
    return out


def test_category_accuracy_is_at_least_95_percent(
    phantoms: dict[str, Phantom], runs: dict[str, Run]
) -> None:
    pairs = [pair for name in phantoms for pair in _matches(phantoms[name], runs[name])]
    objects = sum(len(p.objects) for p in phantoms.values())
    assert len(pairs) >= 0.98 * objects  # every object ends in some finding
    right = sum(f.category == obj.category for obj, f in pairs)
    wrong = [(obj.category, f.category) for obj, f in pairs if f.category != obj.category]
    assert right / len(pairs) >= 0.95, wrong


def test_sides_are_right_on_every_object(
    phantoms: dict[str, Phantom], runs: dict[str, Run]
) -> None:
    for name, phantom in phantoms.items():
        pairs = _matches(phantom, runs[name])
        shared = Counter(f.id for _, f in pairs)
        for obj, f in pairs:
            # Two truth objects in one finding (both screw-tip fills of one body) have no one side.
            if f.category == obj.category and shared[f.id] == 1:
                assert f.side == obj.side, (name, obj.category, f.id)


def test_reference_case_splits_one_cast_into_vertebra_vein_and_ivc(
    runs: dict[str, Run],
) -> None:
    lumbar = runs["reference-case"][0][0]
    by_cat = {f.category: f for f in lumbar}
    assert sorted(f.category for f in lumbar) == sorted(
        ["intravertebral", "intravertebral", "paravertebral_vein", "ivc"]
    )
    l4 = next(f for f in lumbar if f.category == "intravertebral" and f.level == "L4")
    vein, ivc = by_cat["paravertebral_vein"], by_cat["ivc"]
    assert (vein.yeom_type, vein.connected_to, vein.level, vein.side) == ("S", l4.id, "L4", "right")
    assert (ivc.connected_to, ivc.yeom_type, ivc.shape) == (vein.id, None, "cast")
    assert l4.connected_to is None and l4.yeom_type is None
    assert {f.level for f in lumbar if f.category == "intravertebral"} == {"L4", "L5"}
    assert all(f.category_basis == "anatomy" for f in lumbar)


def test_canal_foraminal_and_disc_leaks_are_typed_and_measured(runs: dict[str, Run]) -> None:
    found = runs["canal-leak"][0][0]
    by_id = {f.id: f for f in found}
    epidural = next(f for f in found if f.category == "epidural")
    foraminal = next(f for f in found if f.category == "foraminal")
    disc = next(f for f in found if f.category == "disc")
    # clinical-evidence.md §1.1: B into the canal, C through the cortex, D (extension) disc.
    assert (epidural.yeom_type, foraminal.yeom_type, disc.yeom_type) == ("B", "C", "D")
    for leak, level in ((epidural, "L1"), (foraminal, "L3"), (disc, "L3")):
        assert leak.connected_to is not None
        assert by_id[leak.connected_to].category == "intravertebral"
        assert leak.level == level
    for leak in (epidural, foraminal):
        assert leak.canal_compromise_pct is not None and 0 < leak.canal_compromise_pct <= 100
    assert disc.canal_compromise_pct is None


def test_emboli_have_lung_side_zone_and_centrality(
    phantoms: dict[str, Phantom], runs: dict[str, Run]
) -> None:
    checked = 0
    for name in ("reference-case", "all-leaks", "right-heart"):
        for obj, f in _matches(phantoms[name], runs[name]):
            if obj.category != "pulmonary_artery":
                continue
            assert (f.category, f.side, f.lung_zone, f.central) == (
                "pulmonary_artery",
                obj.side,
                obj.lung_zone,
                obj.central,
            ), name
            checked += 1
    assert checked >= 15


def test_twelve_emboli_are_counted_exactly() -> None:
    spec = PhantomSpec.from_dict({
        "seed": 5, "slice_mm": 3.0, "pixel_mm": 2.0,
        "series": [{"z_from_level": "apex", "z_to_level": "L2", "slice_mm": 3.0}],
        "intravertebral": [{"level": "T9", "volume_ml": 4.0}],
        "emboli": {"count": 12, "side": "bilateral", "right_fraction": 0.5, "zone": "diffuse"},
    })  # fmt: skip
    phantom = make_phantom(spec)
    truth = [o for o in phantom.objects if o.category == "pulmonary_artery"]
    assert len(truth) == 12
    anatomy = truth_anatomy(phantom, 0)
    found, _ = classify_candidates(
        truth_candidates(phantom.series[0]), phantom.series[0].ct, anatomy, 0, 1
    )
    summary = summarise(found, [series_coverage(0, phantom.series[0].ct, anatomy)])
    assert summary.pce.count == 12
    assert summary.pce.laterality == phantom.summary["pce"]["laterality"]


def test_without_anatomy_no_candidate_is_lost_and_no_side_flips(
    phantoms: dict[str, Phantom],
) -> None:
    for name, phantom in phantoms.items():
        for n, series in enumerate(phantom.series):
            candidates = truth_candidates(series)
            found, labels = classify_candidates(candidates, series.ct, None, n, 1)
            assert np.array_equal(labels > 0, candidates.labels > 0), name
            assert len(found) == len(candidates.candidates)
            for f in found:
                assert f.category_basis == "prior" and f.level is None
                # The phantom's canal lies at x = 0 at every height.
                x = f.centroid_lps_mm[0]
                with_canal = side_of(x, 0.0)
                if f.category == "pulmonary_artery":
                    with_canal = "right" if x < 0 else "left"
                if abs(abs(x) - MIDLINE_HALF_WIDTH_MM) > 3.0:  # clear of the ±5 mm boundary
                    assert f.side == with_canal, (name, f)
                assert {f.side, with_canal} != {"right", "left"}, (name, f)


def test_bone_midline_follows_the_spine(phantoms: dict[str, Phantom]) -> None:
    midline = bone_midline(phantoms["all-leaks"].series[0].ct)
    assert np.all(np.abs(midline.x_mm) < 3.0)


def test_unknown_levels_give_offsets_from_the_treated_body(
    phantoms: dict[str, Phantom], runs: dict[str, Run]
) -> None:
    phantom = phantoms["reference-case"]
    anatomy = replace(
        runs["reference-case"][2][0],
        level_anchor="none",
        level_confidence=0.0,
        vertebrae=tuple(replace(v, level=None) for v in runs["reference-case"][2][0].vertebrae),
    )
    found, _ = classify_candidates(
        truth_candidates(phantom.series[0]), phantom.series[0].ct, anatomy, 0, 1
    )
    assert all(f.level is None for f in found)
    by_cat = {f.category: f for f in found}
    assert {f.level_offset for f in found if f.category == "intravertebral"} == {0}
    assert by_cat["paravertebral_vein"].level_offset == 0  # it left the treated L4
    assert by_cat["ivc"].level_offset == 2  # centred at L2, two bodies above L4


def test_prior_categories_when_a_structure_is_missing(
    phantoms: dict[str, Phantom], runs: dict[str, Run]
) -> None:
    phantom = phantoms["reference-case"]
    anatomy = runs["reference-case"][2][0]
    masks = {k: v for k, v in anatomy.masks.items() if k != "ivc"}
    found, _ = classify_candidates(
        truth_candidates(phantom.series[0]),
        phantom.series[0].ct,
        replace(anatomy, masks=masks),
        0,
        1,
    )
    ivc = [f for f in found if f.category == "ivc"]
    assert ivc and all(f.category_basis == "prior" for f in ivc)
    reference = next(f for f in runs["reference-case"][0][0] if f.category == "ivc")
    assert max(f.confidence for f in ivc) < reference.confidence


def test_dense_contrast_vein_is_not_reported(
    phantoms: dict[str, Phantom], runs: dict[str, Run]
) -> None:
    phantom = phantoms["reference-case"]
    anatomy = replace(runs["reference-case"][2][0], dense_contrast_veins=("ivc",))
    warnings: list[str] = []
    found, labels = classify_candidates(
        truth_candidates(phantom.series[0]), phantom.series[0].ct, anatomy, 0, 1, warnings
    )
    assert not [f for f in found if f.category == "ivc"]
    assert warnings and "ivc" in warnings[0]
    assert set(np.unique(labels)) - {0} == {f.id for f in found}


def test_findings_and_summary_validate_against_the_schema(
    phantoms: dict[str, Phantom], runs: dict[str, Run]
) -> None:
    for name in ("reference-case", "all-leaks"):
        phantom = phantoms[name]
        findings, labels, anatomies = runs[name]
        flat = tuple(f for series in findings for f in series)
        assert [f.id for f in flat] == list(range(1, len(flat) + 1))
        for n, lab in enumerate(labels):
            assert set(np.unique(lab)) - {0} == {f.id for f in findings[n]}
        coverage = [series_coverage(n, s.ct, anatomies[n]) for n, s in enumerate(phantom.series)]
        document = FindingsDocument(
            software={"name": "cementscan", "version": "test"},
            inputs=tuple(
                InputRecord(
                    path="x.nii.gz",
                    format="nifti",
                    series_uid=None,
                    shape=s.ct.shape,
                    spacing_mm=s.ct.spacing_mm,
                )
                for s in phantom.series
            ),
            anatomy=AnatomyRecord(),
            findings=flat,
            summary=summarise(flat, coverage),
            management=Management(suggestion="none"),
        )
        validate_findings(document.to_dict())


def large_study(n_components: int = 20) -> tuple[Candidates, CTVolume, Anatomy]:
    """A 512x512x300 CT with ``n_components`` dense blobs and a 2 mm anatomy (speed check)."""
    shape = (512, 512, 300)
    spacing = (0.78, 0.78, 1.0)
    hu = np.zeros(shape, np.int16)
    labels = np.zeros(shape, np.int32)
    rng = np.random.default_rng(0)
    candidates = []
    for n in range(1, n_components + 1):
        radius = 12 if n <= 4 else 3
        c = rng.integers(radius + 1, np.array(shape) - radius - 1)
        box = tuple(slice(int(v) - radius, int(v) + radius + 1) for v in c)
        grid = np.indices([2 * radius + 1] * 3) - radius
        ball = (grid**2).sum(axis=0) <= radius**2
        labels[box][ball] = n
        hu[box][ball] = 2000
        candidates.append(
            Candidate(label=n, voxel_count=int(ball.sum()), volume_ml=1.0,
                      centroid_lps_mm=(0.0, 0.0, 0.0), bbox_lps_mm=((0.0,) * 3, (0.0,) * 3),
                      length_mm=1.0, max_diameter_mm=1.0, mean_hu=2000.0, max_hu=2000.0)
        )  # fmt: skip
    volume = CTVolume(hu, spacing, (-200.0, -200.0, 0.0), np.eye(3), SourceInfo("x", "nifti"))
    grid_shape = (200, 200, 150)
    work = WorkGrid(np.zeros(grid_shape, np.int16), 2.0, np.array([-200.0, -200.0, 0.0]))
    masks: dict[str, np.ndarray] = {}
    vertebrae = []
    for k, level in enumerate(("T12", "L1", "L2", "L3", "L4", "L5")):
        mask = np.zeros(grid_shape, bool)
        mask[80:120, 80:110, 150 - 25 * (k + 1) : 150 - 25 * k - 3] = True
        masks[f"vertebral_body_{level}"] = mask
        z = 2.0 * (150 - 25 * k - 14)
        vertebrae.append(Vertebra(level, (0.0, 0.0, z), (z - 20.0, z + 20.0)))
    for name in ("spinal_canal", "ivc", "aorta", "lung_right", "lung_left", "heart"):
        masks[name] = rng.random(grid_shape) < 0.05
    canal = np.column_stack([np.zeros(150), np.full(150, 40.0), np.arange(150) * 2.0])
    anatomy = Anatomy(grid=work, masks=masks, vertebrae=tuple(vertebrae), level_anchor="sacrum",
                      level_confidence=0.9, canal_centerline_lps_mm=canal)  # fmt: skip
    return Candidates(labels, tuple(candidates)), volume, anatomy


def test_classify_and_summary_of_a_large_ct() -> None:
    """Every candidate of a large study is classified and labelled (its time: benchmarks/bench_analyze.py)."""
    candidates, volume, anatomy = large_study()
    clock = time.perf_counter()
    found, labels = classify_candidates(candidates, volume, anatomy, 0, 1)
    summarise(found, [series_coverage(0, volume, anatomy)])
    seconds = time.perf_counter() - clock
    assert len(found) >= 20
    assert np.array_equal(labels > 0, candidates.labels > 0)
    print(f"classify + summary of {len(found)} findings: {seconds:.2f} s")
