"""The cement stage finds every piece of cement and nothing else (DESIGN.md §5, §7; issue #4).

Real CTs without cement (shared data: metal, calcification, undiluted venous contrast, wires,
a stent graft) give no candidate; the negative phantom gives none at 1, 2.5 and 5 mm; phantoms
with cement are found with sensitivity >= 0.97 per object type and <= 0.1 false candidates per
scan; and whatever is found with anatomy is also found without it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from helpers_cement import NATIVE, judged_candidate
from scipy import ndimage

from cementscan.anatomy import compute_anatomy
from cementscan.cement import Candidates, find_cement
from cementscan.cement.candidates import projected_density
from cementscan.cement.judge import judge
from cementscan.classify.classifier import classify_candidates
from cementscan.findings.model import Finding
from cementscan.io import load_volume
from cementscan.synth import PhantomSpec, make_phantom, preset_spec
from cementscan.synth.insert import insert_cement
from cementscan.synth.insert_spec import InsertSpec
from cementscan.synth.spec import LEAK_CATEGORIES

REAL_VOLUMES = (
    "abdomen-native-3mm/ct.nii.gz",
    "chest-cta/ct.nii.gz",
    "mediastinum-cta-crop/ct.nii.gz",
    "upper-abdomen-dicom-j2k/dicom",
    "abdomen-portal-dicom/dicom",
    "lumbar-crop/ct.nii.gz",
)
SLICES_MM = (1.0, 2.5, 5.0)
PIXEL_MM = 2.0
CEMENT_PRESETS = ("reference-case", "all-leaks", "right-heart")
MIN_SENSITIVITY = 0.97
MAX_FALSE_PER_SCAN = 0.1
REQUIRED_TYPES = ("intravertebral", "leak", "ivc", "right_heart", "pe_linear", "pe_nodular")
LEAKS = LEAK_CATEGORIES  # the leak kinds a phantom spec can ask for


def _type(obj: object) -> str | None:
    """Reporting type of a truth object, or None when it is below the promised size
    (DESIGN.md §7: linear emboli >= 2 mm wide and >= 5 mm long, nodular >= 3 mm)."""
    category = obj.category  # type: ignore[attr-defined]
    if category == "pulmonary_artery":
        volume_mm3 = obj.volume_ml * 1000.0  # type: ignore[attr-defined]
        if obj.shape_kind == "linear":  # type: ignore[attr-defined]
            length = float(obj.length_mm or 0.0)  # type: ignore[attr-defined]
            width = 2.0 * np.sqrt(volume_mm3 / (np.pi * max(length, 1.0)))
            return "pe_linear" if width >= 2.0 and length >= 5.0 else None
        diameter = (6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)
        return "pe_nodular" if diameter >= 3.0 else None
    return "leak" if category in LEAKS else str(category)


@dataclass
class Scored:
    """One series: found truth-object ids by mode, and false candidates by mode."""

    name: str
    types: dict[int, str | None]
    found: dict[str, set[int]]
    false: dict[str, int]


def _score(result: Candidates, truth: np.ndarray) -> tuple[set[int], int]:
    found: set[int] = set()
    false = 0
    for cand in result.candidates:
        hit = np.unique(truth[result.labels == cand.label])
        hit = hit[hit > 0]
        if len(hit):
            found.update(int(h) for h in hit)
        else:
            false += 1
    return found, false


def _run(spec: PhantomSpec, name: str) -> list[Scored]:
    phantom = make_phantom(spec)
    out = []
    for series in phantom.series:
        present = set(np.unique(series.truth_labels).tolist()) - {0}
        types = {o.id: _type(o) for o in phantom.objects if o.id in present}
        found: dict[str, set[int]] = {}
        false: dict[str, int] = {}
        for mode in ("anatomy", "none"):
            anatomy = compute_anatomy(series.ct) if mode == "anatomy" else None
            found[mode], false[mode] = _score(find_cement(series.ct, anatomy), series.truth_labels)
        out.append(Scored(f"{name} {spec.slice_mm} mm", types, found, false))
    return out


def _random_spec(seed: int, slice_mm: float) -> PhantomSpec:
    """A seeded mixed case: two treated levels, leaks, an IVC cast, emboli, confounders."""
    rng = np.random.default_rng(seed)
    return PhantomSpec.from_dict(
        {
            "seed": seed,
            "slice_mm": slice_mm,
            "pixel_mm": PIXEL_MM,
            "noise_hu": float(rng.uniform(8, 20)),
            "series": [{"z_from_level": "apex", "z_to_level": "L5", "description": "CT"}],
            "intravertebral": [
                {"level": "T9", "volume_ml": float(rng.uniform(2, 6))},
                {"level": "L3", "volume_ml": float(rng.uniform(2, 6)), "side": "left"},
            ],
            "leaks": [
                {"category": "paravertebral_vein", "level": "L3", "ivc_to_level": "L1"},
                {"category": "disc", "level": "T9", "direction": "cranial"},
            ],
            "emboli": {"count": 6, "shape": "mixed", "zone": "diffuse"},
            "confounders": {
                "aortic_calcifications": 4,
                "granulomas": 2,
                "granulomas_beside_vessels": 2,
                "hilar_nodes": 1,
                "surgical_clips": 2,
            },
        }
    )


@pytest.fixture(scope="module")
def cement_cases() -> list[Scored]:
    scored: list[Scored] = []
    for slice_mm in SLICES_MM:
        for name in CEMENT_PRESETS:
            spec = preset_spec(name, seed=0, slice_mm=slice_mm, pixel_mm=PIXEL_MM)
            scored.extend(_run(spec, name))
    for seed in (41, 42):
        scored.extend(_run(_random_spec(seed, 2.5), f"random{seed}"))
    return scored


@pytest.mark.parametrize("path", REAL_VOLUMES)
def test_no_false_cement_on_real_ct(shared_data: Path, path: str) -> None:
    volume = load_volume(shared_data / path)
    with_anatomy = find_cement(volume, compute_anatomy(volume))
    assert [
        (c.kind, round(c.volume_ml, 3), [round(v) for v in c.centroid_lps_mm])
        for c in with_anatomy.candidates
    ] == []
    assert not with_anatomy.labels.any()
    assert with_anatomy.labels.shape == volume.shape
    # Without anatomy more look-alikes are allowed, but the label map must still match the list.
    without = find_cement(volume)
    assert int(without.labels.max()) == len(without.candidates)


@pytest.mark.parametrize("slice_mm", SLICES_MM)
def test_negative_phantom_has_no_cement(slice_mm: float) -> None:
    spec = preset_spec("negative", seed=0, slice_mm=slice_mm, pixel_mm=PIXEL_MM)
    if slice_mm < 2.0:  # 1 mm slices of the whole torso: the chest-to-pelvis middle suffices
        spec.series = (
            type(spec.series[0])(z_from_level="T4", z_to_level="pelvis", description="CT"),
        )
    series = make_phantom(spec).series[0]
    result = find_cement(series.ct, compute_anatomy(series.ct))
    assert [(c.kind, [round(v) for v in c.centroid_lps_mm]) for c in result.candidates] == []


@pytest.mark.xfail(
    strict=True,
    reason="issue #4 open: on these presets nodular emboli 28/30 are found (target >= 0.97): "
    "two of the right-heart preset at 5 mm slices and 2 mm pixels share their voxels with lung "
    "air and read below the seed even as balls; every other type is found",
)
def test_sensitivity_per_object_type(cement_cases: list[Scored]) -> None:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed = []
    for case in cement_cases:
        for obj_id, kind in case.types.items():
            if kind is None:
                continue
            hit = obj_id in case.found["anatomy"]
            counts[kind][0] += int(hit)
            counts[kind][1] += 1
            if not hit:
                missed.append(f"{case.name}: object {obj_id} ({kind})")
    assert set(REQUIRED_TYPES) <= set(counts), sorted(counts)
    low = {k: f"{h}/{n}" for k, (h, n) in counts.items() if h / n < MIN_SENSITIVITY}
    assert not low, (low, missed)


def test_false_candidates_per_scan(cement_cases: list[Scored]) -> None:
    false = sum(case.false["anatomy"] for case in cement_cases)
    assert false / len(cement_cases) <= MAX_FALSE_PER_SCAN, [
        (c.name, c.false["anatomy"]) for c in cement_cases if c.false["anatomy"]
    ]


def test_found_with_anatomy_is_found_without(cement_cases: list[Scored]) -> None:
    lost = {
        case.name: sorted(case.found["anatomy"] - case.found["none"])
        for case in cement_cases
        if case.found["anatomy"] - case.found["none"]
    }
    assert lost == {}


def test_confidence_and_label_map_contract(cement_cases: list[Scored]) -> None:
    spec = preset_spec("reference-case", seed=0, slice_mm=3.0, pixel_mm=PIXEL_MM)
    series = make_phantom(spec).series[0]
    result = find_cement(series.ct)
    assert result.labels.dtype == np.int32 and result.labels.shape == series.ct.shape
    assert int(result.labels.max()) == len(result.candidates) > 0
    for n, cand in enumerate(result.candidates, start=1):
        assert cand.label == n
        assert 0.0 < cand.confidence <= 1.0
        assert int(np.count_nonzero(result.labels == n)) == cand.voxel_count


def test_negative_phantom_at_coarse_pixels_has_no_cement() -> None:
    """At 4 mm pixels the apex of the IVC filter (thin struts converging) is one or two dense
    voxels, not a cast: no candidate."""
    spec = preset_spec("negative", seed=0, slice_mm=5.0, pixel_mm=4.0)
    series = make_phantom(spec).series[0]
    result = find_cement(series.ct, compute_anatomy(series.ct))
    assert [(c.kind, [round(v) for v in c.centroid_lps_mm]) for c in result.candidates] == []


def test_fill_no_denser_than_a_dense_cortex_is_found(shared_data: Path) -> None:
    """lumbar-crop's cortex reads ~1,060 HU (its posterior elements peak at 1,400-1,650), and a
    fill in its osteoporotic bone (~100 HU) adds its own surface to the cortex: the seed rises to
    ~1,500 HU. Cement of 1,300 HU (within the phantoms' 1,200-3,000) was then not found at all;
    its thick core finds it, while the cortex' thin peaks stay out."""
    spec = {
        "seed": 7001,
        "objects": [
            {"type": "intravertebral", "level": "L3", "volume_ml": 4, "hu": 1300,
             "fill": "bipedicular"},
        ],
    }  # fmt: skip
    inserted = insert_cement(shared_data / "lumbar-crop" / "ct.nii.gz", InsertSpec.from_dict(spec))
    truth = inserted.truth_labels > 0
    result = find_cement(inserted.ct)
    assert result.calibration is not None
    assert result.calibration.seed_hu > 1400.0  # the case this is about
    assert len(result.candidates) == 1, [(c.kind, c.centroid_lps_mm) for c in result.candidates]
    found = result.labels > 0
    assert np.count_nonzero(found & ~truth) == 0
    assert np.count_nonzero(found & truth) >= 0.5 * np.count_nonzero(truth)


def test_below_the_seed_only_a_core_thick_in_3d_is_cement() -> None:
    """A lumbar crop of the negative phantom at clinical pixels (0.8 mm, 1 mm slices), with
    pedicle screws: their metal is left out of the cortex sample (it lifted the seed to its
    2,000 HU ceiling). A sclerotic plate of 1,200 HU across the L3 body, 2 mm thick, is wide in
    every axial slice but thin across them: not cement. The same density 6 mm thick is."""
    spec = preset_spec("negative", seed=0, slice_mm=1.0, pixel_mm=0.8)
    spec.series = (type(spec.series[0])(z_from_level="L2", z_to_level="L4", description="CT"),)
    phantom = make_phantom(spec)
    series = phantom.series[0]
    names = {v: k for k, v in phantom.anatomy_names.items()}
    body = series.anatomy_labels == names["vertebral_body_L3"]
    inner = ndimage.binary_erosion(body, structure=np.ones((5, 5, 1), bool))
    slices = np.flatnonzero(inner.any(axis=(0, 1)))
    k = int(slices[len(slices) // 2])
    found = {}
    for thickness in (2, 6):
        plate = inner.copy()
        plate[:, :, :k] = False
        plate[:, :, k + thickness :] = False
        hu = series.ct.hu.copy()
        hu[plate] = 1200
        result = find_cement(replace(series.ct, hu=hu))
        assert result.calibration is not None
        assert result.calibration.seed_hu < 1500.0  # not the ceiling: metal is no cortex
        assert result.calibration.seed_hu > 1200.0  # the case this is about
        found[thickness] = [
            (c.kind, (result.labels == c.label)[plate].any()) for c in result.candidates
        ]
    assert found == {2: [], 6: [("blob", True)]}


@pytest.mark.parametrize(("air_shell", "cement"), [(0.77, True), (0.45, False)])
def test_thin_lung_linear_focus_needs_lung_around_it(air_shell: float, cement: bool) -> None:
    """Below cortex density only a thin linear focus in aerated lung is an embolus; the same
    shape with soft tissue or bone along one side is a rib or cartilage at the chest wall."""
    focus = judged_candidate(
        0.06,
        13.7,
        p90_hu=1000.0,
        seed_ml=0.01,
        width_mm=3.8,
        elongation=3.6,
        in_lung=1.0,
        air_shell=air_shell,
        soft_shell=0.05,
    )
    judged = judge(focus, NATIVE, (2.0, 2.0, 2.5))
    assert (judged.confidence > 0.0) is cement, judged.kind


def _ball_in_lung(
    diameter_mm: float,
    hu: float,
    artery_radius_mm: float,
    artery_offset_mm: float,
    offset_mm: np.ndarray,
    spacing_mm: tuple[float, float, float],
    fine_mm: float = 0.1,
) -> np.ndarray:
    """A ball of ``hu`` in aerated lung (-850 HU) beside or in an artery of blood (40 HU) that
    runs across the slices ``artery_offset_mm`` from the ball's centre, the centre
    ``offset_mm`` from a voxel's: drawn on a ``fine_mm`` grid and averaged into voxels of
    ``spacing_mm`` (partial volume). Not the phantom's renderer (synth.render.Canvas): with its
    0.5 x 0.5 x 0.8 mm supersampling, 3-4 mm balls read up to 18 % off through the estimate,
    beyond the 15 % these tests hold it to."""
    factor = [int(round(s / fine_mm)) for s in spacing_mm]
    counts = [
        int(np.ceil(extent / s)) for extent, s in zip((14.0, 14.0, 20.0), spacing_mm, strict=True)
    ]
    axes = [
        (np.arange(n * f) + 0.5) * fine_mm - n * s / 2 - o
        for n, f, s, o in zip(counts, factor, spacing_mm, offset_mm, strict=True)
    ]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    fine = np.full(x.shape, -850.0, np.float32)
    fine[(x - artery_offset_mm) ** 2 + y * y <= artery_radius_mm**2] = 40.0
    fine[x * x + y * y + z * z <= (diameter_mm / 2) ** 2] = hu
    blocks = (counts[0], factor[0], counts[1], factor[1], counts[2], factor[2])
    return np.asarray(fine.reshape(blocks).mean(axis=(1, 3, 5)))


def _projected_hu(hu_box: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """projected_density of what a native scan grows in ``hu_box`` (its lung grow level), over
    unenhanced blood."""
    mask = hu_box >= NATIVE.lung_grow_hu
    return projected_density(hu_box, mask, np.asarray(spacing_mm), 40.0)[0]


@pytest.mark.parametrize("slice_mm", [5.0, 2.5])
@pytest.mark.parametrize(
    ("diameter_mm", "hu", "artery_radius_mm"),
    [(3.2, 1300.0, 1.6), (3.2, 1800.0, 1.6), (4.0, 1800.0, 2.0), (3.2, 1300.0, 2.5)],
)
def test_an_embolus_smaller_than_the_slice_reads_its_density_projected(
    slice_mm: float, diameter_mm: float, hu: float, artery_radius_mm: float
) -> None:
    """A nodular embolus lodged in the artery it fills keeps its excess attenuation over the
    blood however the slices cut it: its density as a ball is its own within 15 % at every
    offset, while its densest voxel reads far below it at 5 mm slices."""
    spacing = (0.8, 0.8, slice_mm)
    rng = np.random.default_rng(7)
    peaks, densities = [], []
    for _ in range(8):
        offset = rng.uniform(-0.5, 0.5, 3) * np.asarray(spacing)
        hu_box = _ball_in_lung(diameter_mm, hu, artery_radius_mm, 0.0, offset, spacing)
        peaks.append(float(hu_box.max()))
        densities.append(_projected_hu(hu_box, spacing))
    assert np.allclose(densities, hu, rtol=0.15), np.round(densities)
    if slice_mm == 5.0:
        assert max(peaks) <= 0.8 * hu, np.round(peaks)


@pytest.mark.parametrize("slice_mm", [5.0, 2.5, 1.0])
@pytest.mark.parametrize(
    ("diameter_mm", "artery_offset_mm"), [(6.4, 0.0), (3.2, 3.1), (4.0, 3.5), (6.4, 4.7)]
)
def test_a_calcified_granuloma_reads_no_denser_than_cortex_projected(
    slice_mm: float, diameter_mm: float, artery_offset_mm: float
) -> None:
    """A calcified granuloma of 1,000 HU in aerated lung, alone or touching an artery of 1.5 mm
    radius, reads at most 10 % denser as a ball: below the seed of a scan whose cortex is as
    dense as it (1.3 x cortex), at every offset."""
    spacing = (0.8, 0.8, slice_mm)
    radius_mm = 1.5 if artery_offset_mm else 0.0
    rng = np.random.default_rng(8)
    densities = []
    for _ in range(8):
        offset = rng.uniform(-0.5, 0.5, 3) * np.asarray(spacing)
        hu_box = _ball_in_lung(diameter_mm, 1000.0, radius_mm, artery_offset_mm, offset, spacing)
        if (hu_box >= NATIVE.lung_grow_hu).any():
            densities.append(_projected_hu(hu_box, spacing))
    assert densities and max(densities) <= 1100.0, np.round(densities)


def test_small_emboli_at_5_mm_slices_are_found_and_granulomas_are_not() -> None:
    """Chest phantoms at 5 mm slices and 0.8 mm pixels, each with eight nodular emboli of
    1,800 HU (3.2-5.2 mm) and calcified granulomas and nodes of up to 1,000 HU (some touching a
    vessel): at least 17 of the 24 emboli are found (their peaks read 450-1,300 HU, below the
    seed), and no granuloma, node or anything else is taken. Before the emboli were read as balls
    (a fixed partial-volume gain for foci under 0.06 mL): 13 of 24."""
    found = total = 0
    false = []
    for seed in (5, 6, 7):
        spec = PhantomSpec.from_dict(
            {
                "seed": seed,
                "slice_mm": 5.0,
                "pixel_mm": 0.8,
                "noise_hu": 15.0,
                "series": [{"z_from_level": "apex", "z_to_level": "T12", "description": "CT"}],
                "intravertebral": [{"level": "T8", "volume_ml": 3.0}],
                "emboli": {"count": 8, "shape": "nodular", "zone": "diffuse", "hu": 1800.0},
                "confounders": {"granulomas": 3, "granulomas_beside_vessels": 3, "hilar_nodes": 2},
            }
        )
        phantom = make_phantom(spec)
        series = phantom.series[0]
        result = find_cement(series.ct)
        emboli = [o.id for o in phantom.objects if o.category == "pulmonary_artery"]
        hit, _ = _score(result, series.truth_labels)
        found += len(hit & set(emboli))
        total += len(emboli)
        for cand in result.candidates:
            if not series.truth_labels[result.labels == cand.label].any():
                false.append((seed, cand.kind, [round(v) for v in cand.centroid_lps_mm]))
    assert total == 24
    assert found >= 17, found
    assert false == []


@pytest.mark.parametrize(
    ("contrast", "z_from_level", "z_to_level", "seed"),
    [
        ("none", "T4", "L5", 2002),  # the end slice cuts both T4 ribs obliquely in lung
        ("arterial", "T4", "L1", 2002),  # the same, read against iodine
        ("arterial", "apex", "L2", 2018),  # a rib neck along the posterior lung border
    ],
)
def test_ribs_crossing_the_lung_at_5_mm_slices_are_not_emboli(
    contrast: str, z_from_level: str, z_to_level: str, seed: int
) -> None:
    """Phantoms at 5 mm slices and 0.8 mm pixels with a fill and no embolus: nothing else is
    taken. Before, each of these ribs read as a dense line in lung (found on tuning seeds drawn
    after the detector's tuning set; the geometry needs this seed's slice grid)."""
    spec = PhantomSpec.from_dict(
        {
            "seed": seed,
            "slice_mm": 5.0,
            "pixel_mm": 0.8,
            "noise_hu": 15.0,
            "series": [
                {"z_from_level": z_from_level, "z_to_level": z_to_level, "description": "CT"}
            ],
            "intravertebral": [{"level": "T8", "volume_ml": 3.0}],
            "confounders": {"contrast": contrast},
        }
    )
    series = make_phantom(spec).series[0]
    result = find_cement(series.ct)
    false = [
        (cand.kind, [round(v) for v in cand.centroid_lps_mm])
        for cand in result.candidates
        if not series.truth_labels[result.labels == cand.label].any()
    ]
    assert false == []


@pytest.mark.parametrize(
    ("volume_ml", "length_mm", "seed_ml", "width_mm", "elongation", "cement"),
    [
        (0.19, 30.0, 0.09, 4.7, 6.3, True),  # a right-ventricle spike at 2.5 mm slices
        (0.18, 28.9, 0.08, 4.5, 6.4, True),  # the same at 5 mm
        (0.07, 17.6, 0.06, 4.0, 4.4, False),  # a strut of an IVC filter
        (0.10, 8.3, 0.08, 4.0, 2.1, False),  # a surgical clip's partial volume
    ],
)
def test_dense_spike_in_soft_tissue(
    volume_ml: float,
    length_mm: float,
    seed_ml: float,
    width_mm: float,
    elongation: float,
    cement: bool,
) -> None:
    """An elongated fragment denser than the scan's cortex, in soft tissue or blood, of at least
    0.15 ml is a cement spike; thin metal spreads less material than that."""
    spike = judged_candidate(
        volume_ml,
        length_mm,
        p90_hu=1400.0,
        seed_ml=seed_ml,
        width_mm=width_mm,
        elongation=elongation,
        soft_shell=0.7,
        air_shell=0.0,
    )
    judged = judge(spike, NATIVE, (2.0, 2.0, 2.5 if volume_ml != 0.18 else 5.0))
    assert (judged.confidence > 0.0) is cement, judged.kind


RightHeartCase = tuple[np.ndarray, tuple[Finding, ...], np.ndarray]  # truth mask, findings, labels


@pytest.fixture(scope="module")
def right_heart_cases() -> dict[float, RightHeartCase]:
    """The right-heart preset at 2.5 and 5 mm: detected, then classified with its anatomy."""
    out = {}
    for slice_mm in (2.5, 5.0):
        spec = preset_spec("right-heart", seed=0, slice_mm=slice_mm, pixel_mm=PIXEL_MM)
        phantom = make_phantom(spec)
        series = phantom.series[0]
        anatomy = compute_anatomy(series.ct)
        findings, labels = classify_candidates(
            find_cement(series.ct, anatomy), series.ct, anatomy, 0, 1, []
        )
        spike = next(o for o in phantom.objects if o.category == "right_heart")
        out[slice_mm] = (series.truth_labels == spike.id, findings, labels)
    return out


@pytest.mark.parametrize("slice_mm", [2.5, 5.0])
def test_right_heart_spike_is_found(
    right_heart_cases: dict[float, RightHeartCase], slice_mm: float
) -> None:
    truth, _, labels = right_heart_cases[slice_mm]
    assert set(np.unique(labels[truth]).tolist()) - {0}, "the right-heart spike is not found"


@pytest.mark.parametrize("slice_mm", [2.5, 5.0])
def test_right_heart_spike_is_named_right_heart(
    right_heart_cases: dict[float, RightHeartCase], slice_mm: float
) -> None:
    truth, findings, labels = right_heart_cases[slice_mm]
    ids = set(np.unique(labels[truth]).tolist()) - {0}
    categories = {f.category for f in findings if f.id in ids}
    assert categories == {"right_heart"}, categories


DenseSvcCase = tuple[np.ndarray, tuple[Finding, ...], np.ndarray, Candidates, np.ndarray]


def _dense_svc_case(chamber: str) -> DenseSvcCase:
    """A right-heart spike in ``chamber`` on a portal-venous phantom at 5 mm whose SVC holds
    undiluted contrast; the anatomy states the SVC dense (the phantom's dense column lies above
    the anatomy's SVC prior, so its own measure does not see it). Returns the spike's truth
    mask, the findings, their label map, the candidates and the spike's centroid (LPS mm)."""
    spec = preset_spec(
        "right-heart",
        seed=0,
        slice_mm=5.0,
        pixel_mm=PIXEL_MM,
        right_heart={"chamber": chamber, "shape": "linear", "length_mm": 24.0},
        confounders={"contrast": "portal_venous", "dense_venous_contrast": True},
    )
    phantom = make_phantom(spec)
    series = phantom.series[0]
    anatomy = replace(compute_anatomy(series.ct), dense_contrast_veins=("svc",))
    found = find_cement(series.ct, anatomy)
    findings, labels = classify_candidates(found, series.ct, anatomy, 0, 1, [])
    spike = next(o for o in phantom.objects if o.category == "right_heart")
    truth = series.truth_labels == spike.id
    centroid = series.ct.index_to_lps(np.argwhere(truth)).mean(axis=0)
    return truth, findings, labels, found, centroid


def test_ventricle_spike_is_found_below_a_dense_svc() -> None:
    """Undiluted SVC contrast mixes in the atrium: a spike in the right ventricle stays cement."""
    truth, findings, labels, _, _ = _dense_svc_case("right_ventricle")
    ids = set(np.unique(labels[truth]).tolist()) - {0}
    assert {f.category for f in findings if f.id in ids} == {"right_heart"}


def test_atrium_spike_at_the_svc_inflow_is_not_assessable() -> None:
    """Where the dense SVC streams into the atrium cement cannot be told from contrast: what lies
    there is dropped as contrast (the summary says the right heart is not assessable)."""
    truth, _, labels, found, centroid = _dense_svc_case("right_atrium")
    assert not set(np.unique(labels[truth]).tolist()) - {0}
    near = [c.kind for c in found.rejected if np.linalg.norm(c.centroid_lps_mm - centroid) < 10]
    assert near == ["dense_contrast_vein"]


@pytest.mark.parametrize(
    ("in_pool", "homogeneity", "cement"), [(1.0, 0.96, True), (0.0, 0.0, False), (1.0, 0.6, False)]
)
def test_spike_ringed_by_enhanced_blood_is_not_along_bone(
    in_pool: float, homogeneity: float, cement: bool
) -> None:
    """A right-ventricle spike of a portal-venous phantom at 5 mm: the blood around it
    reads 150-250 HU, as dense as bone by a threshold (bone_shell 0.83). Ringed by one
    homogeneous blood pool it is a spike in a blood pool; the same shell without a pool, or
    with an uneven ring, is a rib's cortex."""
    spike = judged_candidate(
        0.18,
        28.9,
        p90_hu=1310.0,
        seed_ml=0.08,
        width_mm=4.5,
        elongation=6.4,
        fill=0.67,
        bone_shell=0.83,
        soft_shell=0.17,
        air_shell=0.0,
        in_pool=in_pool,
        lumen_hu=161.0,
        lumen_homogeneity=homogeneity,
    )
    enhanced = replace(NATIVE, blood_hu=220.0)
    judged = judge(spike, enhanced, (2.0, 2.0, 5.0))
    assert (judged.confidence > 0.0) is cement, judged.kind


@pytest.mark.parametrize("slice_mm", [2.5, 1.0])
def test_a_thin_ivc_cast_without_a_core_is_found(slice_mm: float) -> None:
    """A paravertebral-vein leak from L5 cast up the IVC to L1 (fresh tuning seed 2029 of
    benchmarks/accuracy_detection.py), seen at 2.5 and 1 mm slices with 2 mm pixels: the cast
    is 6-8 mm wide, so no voxel survives the core's erosion, and its 1.7 ml of seed-dense cement
    is more than a shell's cap allows. It is solid in its slices (cortex rings its marrow), so it
    is a cast, not a cortex, even where it runs 4 mm from the vertebral bodies (1 mm slices: a
    bone shell of 0.38)."""
    spec = PhantomSpec.from_dict({
        "seed": 2029, "pixel_mm": 2.0, "slice_mm": slice_mm, "noise_hu": 16.7,
        "series": [{"z_from_level": "apex", "z_to_level": "L2", "description": "CT chest"}],
        "intravertebral": [{"level": "T5", "volume_ml": 3.25, "side": "midline"},
                           {"level": "T8", "volume_ml": 3.88, "side": "right"},
                           {"level": "L5", "volume_ml": 4.46, "side": "right"}],
        "leaks": [{"category": "disc", "level": "T8", "side": "right", "direction": "cranial"},
                  {"category": "paravertebral_vein", "level": "L5", "side": "right",
                   "ivc_to_level": "L1"},
                  {"category": "paravertebral_soft_tissue", "level": "T5", "side": "right"}],
        "emboli": {"count": 7, "side": "left", "zone": "middle", "shape": "nodular", "central": 1},
        "confounders": {"aortic_calcifications": 5, "coronary_calcifications": 3,
                        "phleboliths": 3, "surgical_clips": 1, "contrast": "arterial",
                        "disc_calcifications": ["T5"]},
    })  # fmt: skip
    phantom = make_phantom(spec)
    series = phantom.series[0]
    (cast,) = [o for o in phantom.objects if o.category == "ivc"]
    truth = series.truth_labels == cast.id
    result = find_cement(series.ct, compute_anatomy(series.ct))
    by_label = {c.label: c for c in result.candidates}
    covering = [by_label[label] for label in np.unique(result.labels[truth]) if label]
    assert covering, [(c.kind, round(c.volume_ml, 2)) for c in result.rejected]
    main = max(covering, key=lambda c: c.volume_ml)
    assert main.features["core_ml"] == 0.0 and main.features["seed_ml"] > 1.0
    assert np.count_nonzero(np.isin(result.labels[truth], [c.label for c in covering])) >= (
        0.7 * np.count_nonzero(truth)
    )


def test_a_faint_vein_leak_beside_its_fill_is_a_satellite() -> None:
    """A paravertebral-vein leak of 1,430 HU cement from a left L2 fill (fresh tuning seed 2010
    of benchmarks/accuracy_detection.py) at 5 mm slices with 2 mm pixels: the vein averages down
    to a component of 0.16 ml holding three seed-dense voxels, too few to read alone, 26 mm from
    the fill. Beside the study's own cement it is a leak; the aortic calcifications and the
    surgical clip of the same scan, with no cement near them, stay out."""
    spec = PhantomSpec.from_dict({
        "seed": 2010, "pixel_mm": 2.0, "slice_mm": 5.0, "noise_hu": 18.0,
        "series": [{"z_from_level": "T4", "z_to_level": "L5",
                    "description": "CT thoracolumbar spine"}],
        "intravertebral": [{"level": "L2", "volume_ml": 3.08, "side": "left"}],
        "leaks": [{"category": "paravertebral_vein", "level": "L2", "side": "right"}],
        "emboli": {"count": 4, "side": "bilateral", "zone": "middle", "shape": "nodular",
                   "central": 0},
        "right_heart": {"chamber": "right_atrium", "shape": "linear", "length_mm": 10.6},
        "confounders": {"aortic_calcifications": 2, "granulomas_beside_vessels": 2,
                        "surgical_clips": 1, "contrast": "none", "disc_calcifications": ["T8"]},
    })  # fmt: skip
    phantom = make_phantom(spec)
    series = phantom.series[0]
    (vein,) = [o for o in phantom.objects if o.category == "paravertebral_vein"]
    for anatomy in (None, compute_anatomy(series.ct)):
        result = find_cement(series.ct, anatomy)
        by_label = {c.label: c for c in result.candidates}
        on_vein = np.unique(result.labels[series.truth_labels == vein.id])
        assert [by_label[n].kind for n in on_vein if n] == ["satellite"]
        on_truth = np.unique(result.labels[series.truth_labels > 0])
        assert set(by_label) <= set(on_truth.tolist())  # no false candidate


@pytest.mark.parametrize(
    ("pixel_mm", "projected_hu", "vessel_frac", "asymmetry", "cement"),
    [
        (0.8, 1180.0, 0.06, 0.10, True),  # lodged in its artery: 0.92 x the seed
        (0.8, 1100.0, 0.07, 0.66, False),  # lodged-looking at 0.86 x (tuning seed 6's granuloma)
        (0.8, 1180.0, 0.00, 1.00, False),  # as dense, alone in the parenchyma: a granuloma
        (0.8, 1180.0, 0.29, 0.71, False),  # ... or beside a vessel running past it
        (0.8, 1180.0, 0.06, 0.90, False),  # ... or with the vessel on one side only
        (0.8, 1340.0, 0.00, 1.00, True),  # above the seed: cement whatever lies around it
        (2.0, 1180.0, 0.06, 0.10, False),  # 2 mm pixels do not resolve the artery: seed asked
    ],
)
def test_a_small_lung_focus_lodged_in_its_artery_is_read_at_clinical_pixels(
    pixel_mm: float, projected_hu: float, vessel_frac: float, asymmetry: float, cement: bool
) -> None:
    """A 3 mm focus on 5 mm slices (projected diameter 3.3 mm, seed 1,286 HU): where pixels
    resolve a segmental artery, an embolus lodged in one (the artery leaving it on opposite
    sides) is taken from 0.9 x the seed; anything else, and any focus at 2 mm pixels, from the
    seed."""
    focus = judged_candidate(
        0.04,
        4.0,
        p90_hu=600.0,
        seed_ml=0.0,
        width_mm=3.0,
        elongation=1.3,
        in_lung=1.0,
        air_shell=0.63,
        soft_shell=0.3,
        projected_hu=projected_hu,
        projected_diameter_mm=3.3,
        depth_mm=10.0,
        vessel_frac=vessel_frac,
        asymmetry=asymmetry,
    )
    cal = replace(NATIVE, seed_hu=1286.0)
    judged = judge(focus, cal, (pixel_mm, pixel_mm, 5.0))
    assert (judged.confidence > 0.0) is cement, judged.kind
