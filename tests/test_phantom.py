"""Synthetic phantoms: truth consistent with the voxels, sides right, outputs complete."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from cementscan.errors import InputError
from cementscan.synth import PRESETS, Phantom, PhantomSpec, make_phantom, preset_spec, write_phantom
from cementscan.synth.shapes import sample_inside

SMALL = {"pixel_mm": 2.0, "noise_hu": 0.0}


@pytest.fixture(scope="module")
def reference() -> Phantom:
    return make_phantom(preset_spec("reference-case", seed=0, slice_mm=3.0, **SMALL))


@pytest.fixture(scope="module")
def negative() -> Phantom:
    return make_phantom(preset_spec("negative", seed=1, slice_mm=3.0, **SMALL))


@pytest.fixture(scope="module")
def all_leaks() -> Phantom:
    return make_phantom(preset_spec("all-leaks", seed=2, slice_mm=3.0, **SMALL))


def _label_id(phantom: Phantom, name: str) -> int:
    return next(i for i, n in phantom.anatomy_names.items() if n == name)


def _centroid_lps(phantom: Phantom, series: int, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    return phantom.series[series].ct.index_to_lps(idx.mean(axis=0))


METAL = ("pedicle_screw", "surgical_clip", "ivc_filter")


def _check_truth_voxels(phantom: Phantom) -> None:
    metal = [c for c in phantom.confounders if c.kind in METAL]
    for obj in phantom.objects:
        assert obj.series_indices, f"object {obj.id} ({obj.category}) is in no series"
        for n in obj.series_indices:
            s = phantom.series[n]
            mask = s.truth_labels == obj.id
            values = s.ct.hu[mask].astype(float)
            # Partial volume only mixes toward the background: never above the cement HU
            # (except in slices with metal, whose streaks add to it) ...
            z_mm = s.ct.index_to_lps(
                np.stack([np.zeros(s.ct.shape[2])] * 2 + [np.arange(s.ct.shape[2])], 1)
            )[:, 2]
            metal_slices = np.zeros(s.ct.shape[2], dtype=bool)
            for c in metal:
                lo, hi = c.shape.bbox()
                metal_slices |= (z_mm >= lo[2] - 3 * s.ct.spacing_mm[2]) & (
                    z_mm <= hi[2] + 3 * s.ct.spacing_mm[2]
                )
            clean = s.ct.hu[mask & ~metal_slices[None, None, :]].astype(float)
            if clean.size:
                assert clean.max() <= min(obj.hu, 3071) + 2, (obj.id, obj.category)
            # ... and the labelled voxels stand out from soft tissue and lung.
            assert values.max() > 150, (obj.id, obj.category, values.max())
            if (
                obj.volume_ml >= 1.0 and clean.size == values.size
            ):  # a core of fully covered voxels has exactly the cement HU
                assert abs(clean.max() - obj.hu) <= 2, (obj.id, obj.category)
            lo, hi = obj.shape.bbox()
            z0, z1 = s.z_range_lps_mm
            if lo[2] >= z0 and hi[2] <= z1 and mask.sum() >= 3:
                got = _centroid_lps(phantom, n, mask)
                tol = max(s.ct.spacing_mm) * 1.0 + 0.5
                assert np.linalg.norm(got - np.array(obj.centroid_lps_mm)) <= tol, (
                    obj.id,
                    obj.category,
                    got,
                )


def test_truth_voxels_have_the_spec_hu_and_centroid(reference: Phantom, all_leaks: Phantom) -> None:
    _check_truth_voxels(reference)
    _check_truth_voxels(all_leaks)


def test_spec_hu_reaches_the_voxels() -> None:
    spec = preset_spec("canal-leak", seed=4, slice_mm=3.0, **SMALL)
    data = spec.to_dict()
    data["intravertebral"][1]["hu"] = 1350.0
    phantom = make_phantom(PhantomSpec.from_dict(data))
    obj = next(o for o in phantom.objects if o.level == "L3" and o.category == "intravertebral")
    assert obj.hu == 1350.0
    assert phantom.series[0].ct.hu[phantom.series[0].truth_labels == obj.id].max() == 1350
    _check_truth_voxels(phantom)


def test_sides_and_anatomy_positions(reference: Phantom) -> None:
    s = reference.series[0]
    ana = s.anatomy_labels
    canal = _centroid_lps(reference, 0, ana == _label_id(reference, "spinal_canal"))
    ivc = _centroid_lps(reference, 0, ana == _label_id(reference, "ivc"))
    aorta = _centroid_lps(reference, 0, ana == _label_id(reference, "aorta"))
    assert ivc[0] < canal[0] - 10 and ivc[1] < canal[1] - 20  # right-anterior of the spine
    assert aorta[0] > canal[0] and aorta[1] < canal[1] - 20  # left-anterior
    c = reference.series[1]
    lr = _centroid_lps(reference, 1, c.anatomy_labels == _label_id(reference, "lung_right"))
    ll = _centroid_lps(reference, 1, c.anatomy_labels == _label_id(reference, "lung_left"))
    assert lr[0] < -40 < 40 < ll[0]
    canal_c = _centroid_lps(reference, 1, c.anatomy_labels == _label_id(reference, "spinal_canal"))
    heart = _centroid_lps(reference, 1, c.anatomy_labels == _label_id(reference, "heart"))
    azygos = _centroid_lps(reference, 1, c.anatomy_labels == _label_id(reference, "azygos"))
    assert heart[1] < canal_c[1] - 50  # heart anterior
    assert azygos[0] < canal_c[0] and azygos[1] > heart[1]
    # Each embolus's side is the lung around it.
    from scipy import ndimage

    ids = {"right": _label_id(reference, "lung_right"), "left": _label_id(reference, "lung_left")}
    emboli = [o for o in reference.objects if o.category == "pulmonary_artery"]
    assert emboli
    for obj in emboli:
        around = ndimage.binary_dilation(c.truth_labels == obj.id, iterations=3)
        n_right = int((c.anatomy_labels[around] == ids["right"]).sum())
        n_left = int((c.anatomy_labels[around] == ids["left"]).sum())
        assert (obj.side == "right") == (n_right > n_left), (obj.id, obj.side, n_right, n_left)
        assert (obj.side == "right") == (obj.centroid_lps_mm[0] < 0)
    # Non-pulmonary cement: side from x relative to the canal (DESIGN.md §3).
    for obj in reference.objects:
        if obj.category in ("intravertebral", "paravertebral_vein", "ivc"):
            assert obj.side == "right", (obj.id, obj.category)


def test_reference_case_truth_and_summary(reference: Phantom) -> None:
    cats = [o.category for o in reference.objects]
    assert cats.count("intravertebral") == 2 and cats.count("pulmonary_artery") == 7
    vein = next(o for o in reference.objects if o.category == "paravertebral_vein")
    ivc = next(o for o in reference.objects if o.category == "ivc")
    assert vein.yeom_type == "S" and vein.level == "L4" and vein.connected_to == 1
    assert ivc.connected_to == vein.id and ivc.yeom_type is None and ivc.shape_kind == "cast"
    summary = reference.summary
    assert [t["level"] for t in summary["treated_levels"]] == ["L4", "L5"]
    assert summary["ivc"]["present"] and summary["ivc"]["cranial_extent_level"] == "L1"
    assert summary["ivc"]["caudal_extent_level"] == "L4"
    pce = summary["pce"]
    assert pce["count"] == 7 and pce["laterality"] == "bilateral"
    assert pce["predominance"] == "right" and pce["zone_predominance"] == "lower"
    assert next(s.coverage for s in reference.series) == ("abdomen", "lumbar_spine")
    assert "chest" in reference.series[1].coverage
    uids = {s.ct.source.frame_of_reference_uid for s in reference.series}
    assert len(uids) == 1 and reference.series[0].ct.source.patient_id == "PHANTOM-0"
    # Cast pieces touch: vein and IVC cast form one connected component with L4's cement.
    from scipy import ndimage

    t = reference.series[0].truth_labels
    comp, _ = ndimage.label(np.isin(t, [1, vein.id, ivc.id]), structure=np.ones((3, 3, 3)))
    assert len({int(comp[t == i][0]) for i in (1, vein.id, ivc.id)}) == 1


def test_emboli_are_two_slices_apart(reference: Phantom) -> None:
    emboli = [o for o in reference.objects if o.category == "pulmonary_artery"]
    pts = [sample_inside(o.shape, 0.4)[0] for o in emboli]
    for a in range(len(pts)):
        for b in range(a + 1, len(pts)):
            d = np.linalg.norm(pts[a][:, None, :] - pts[b][None, :, :], axis=2).min()
            assert d >= 2 * 3.0 - 0.8, (emboli[a].id, emboli[b].id, d)


def test_negative_has_confounders_and_no_cement(negative: Phantom) -> None:
    assert negative.objects == [] and not negative.series[0].truth_labels.any()
    kinds = {c.kind for c in negative.confounders}
    assert {"aortic_calcification", "granuloma", "pedicle_screw", "ivc_filter", "phlebolith",
            "dense_venous_contrast", "surgical_clip", "hilar_lymph_node", "osteophyte"} <= kinds  # fmt: skip
    s = negative.series[0]
    screw = next(c for c in negative.confounders if c.kind == "pedicle_screw")
    assert s.ct.hu[s.confounder_labels == screw.id].max() == 3071  # metal clips at the scale top
    assert negative.summary["pce"]["count"] == 0 and not negative.summary["leak_present"]
    beside = [c for c in negative.confounders if c.note == "beside a vessel"]
    assert beside


def test_orientation_restores_the_same_physical_phantom() -> None:
    base = preset_spec("ribs-11", seed=5, slice_mm=5.0, pixel_mm=4.0, noise_hu=0.0).to_dict()
    lps = make_phantom(PhantomSpec.from_dict(base))
    ras = make_phantom(PhantomSpec.from_dict({**base, "orientation": "RAS"}))
    pir = make_phantom(PhantomSpec.from_dict({**base, "orientation": "PIR"}))
    assert (
        ras.series[0].ct.orientation_code() == "RAS"
        and pir.series[0].ct.orientation_code() == "PIR"
    )
    a, b = lps.series[0], ras.series[0]
    np.testing.assert_array_equal(b.ct.hu, a.ct.hu[::-1, ::-1, :])
    ivc = _label_id(lps, "ivc")
    for ph in (ras, pir):
        got = _centroid_lps(ph, 0, ph.series[0].anatomy_labels == ivc)
        np.testing.assert_allclose(got, _centroid_lps(lps, 0, a.anatomy_labels == ivc), atol=1e-6)


def test_variants_in_anatomy(tmp_path: Path) -> None:
    small: dict[str, Any] = {"slice_mm": 5.0, "pixel_mm": 4.0, "noise_hu": 0.0}
    r11 = make_phantom(preset_spec("ribs-11", **small))
    r13 = make_phantom(preset_spec("ribs-13", **small))
    tr = make_phantom(preset_spec("transitional", **small))
    names11 = set(r11.anatomy_names.values())
    assert "rib_right_11" in names11 and "rib_right_12" not in names11
    assert "rib_left_13_lumbar" in set(r13.anatomy_names.values())
    assert (
        r11.truth_json()["anatomy"]["rib_pairs"] == 11
        and r13.truth_json()["anatomy"]["rib_pairs"] == 13
    )
    assert tr.truth_json()["anatomy"]["transitional"] is True
    disc = {v["level"]: v["z_range_lps_mm"] for v in tr.truth_json()["anatomy"]["vertebrae"]}
    assert disc["L5"][0] - disc["S1"][1] < 5.0  # rudimentary L5-S1 disc


def test_write_outputs_and_reproducible(tmp_path: Path, reference: Phantom) -> None:
    files = write_phantom(reference, tmp_path / "a", dicom=True)
    names = {p.name for p in files}
    for stem in ("ct", "truth_labels", "anatomy_labels", "confounder_labels"):
        assert {f"{stem}_0.nii.gz", f"{stem}_1.nii.gz"} <= names
    assert {"overview_0.png", "overview_1.png", "truth.json"} <= names
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert truth["schema"] == "cementscan.truth/1" and truth["preset"] == "reference-case"
    assert [s["file"] for s in truth["series"]] == ["ct_0.nii.gz", "ct_1.nii.gz"]
    assert truth["anatomy"]["labels"]["1"] == "body" and truth["anatomy"]["ivc_top_level"] == "L1"
    assert {o["category"] for o in truth["objects"]} == {"intravertebral", "paravertebral_vein", "ivc",
                                                         "pulmonary_artery"}  # fmt: skip
    assert PhantomSpec.from_dict(truth["spec"]).to_dict() == truth["spec"]
    image = sitk.ReadImage(str(tmp_path / "a" / "ct_1.nii.gz"))
    assert image.GetSize() == reference.series[1].ct.shape
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(image).transpose(2, 1, 0), reference.series[1].ct.hu
    )
    # DICOM: both series, one patient / study / frame of reference.
    reader = sitk.ImageSeriesReader()
    series_ids = set()
    for folder in sorted((tmp_path / "a" / "dicom").iterdir()):
        series_ids |= set(reader.GetGDCMSeriesIDs(str(folder)))
    assert series_ids == {s.ct.source.series_uid for s in reference.series}
    import matplotlib.image as mpimg

    assert mpimg.imread(tmp_path / "a" / "overview_0.png").shape[0] > 200
    # The same spec gives the same bytes.
    again = make_phantom(PhantomSpec.from_dict(reference.spec.to_dict()))
    write_phantom(again, tmp_path / "b", png=False)
    for name in ("ct_0.nii.gz", "truth_labels_1.nii.gz", "truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slice_mm": 6.0}, "slice_mm"),
        ({"colour": "red"}, "unknown field"),
        ({"intravertebral": [{"level": "L9"}]}, "unknown level"),
        ({"intravertebral": [{"level": "L2", "volume_ml": 12}]}, "volume_ml"),
        ({"leaks": [{"category": "disc", "level": "L3"}]}, "not a treated"),
        (
            {
                "leaks": [{"category": "wormhole", "level": "L3"}],
                "intravertebral": [{"level": "L3"}],
            },
            "category",
        ),
        ({"orientation": "LLS"}, "orientation"),
        ({"emboli": {"count": 3, "central": 5}}, "central"),
    ],
)
def test_bad_specs_are_input_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        PhantomSpec.from_dict(change)


def test_spec_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "spec.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"spec\.json"):
        PhantomSpec.from_json(bad)
    with pytest.raises(InputError, match="unknown phantom preset"):
        preset_spec("no-such-preset")
    assert {"reference-case", "negative", "ribs-11", "ribs-13", "transitional"} <= set(PRESETS)


def test_cli_phantom(cli: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "p"
    run = cli(
        "phantom",
        "--out",
        out,
        "--preset",
        "ribs-13",
        "--slice-mm",
        "5",
        "--pixel-mm",
        "4",
        "--no-png",
    )
    assert run.code == 0, run.err
    assert str(out / "truth.json") in run.out and (out / "ct.nii.gz").is_file()
    assert not (out / "overview.png").exists()
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"intravertebral": [{"level": "T9"}], "slice_mm": 5, "pixel_mm": 4,
                                "series": [{"z_from_level": "T7", "z_to_level": "T11"}]}))  # fmt: skip
    run = cli("phantom", "--out", tmp_path / "q", "--spec", spec, "--seed", "3")
    assert run.code == 0, run.err
    assert json.loads((tmp_path / "q" / "truth.json").read_text())["objects"][0]["level"] == "T9"
    assert cli("phantom", "--out", out, "--preset", "nope").code == 2
    assert cli("phantom", "--out", out, "--slice-mm", "7").code == 2
    helped = cli("phantom", "--out", out, "--preset", "help")
    assert helped.code == 0 and "reference-case" in helped.out


def test_leaks_start_at_the_cortex_and_touch_their_fill(all_leaks: Phantom) -> None:
    """Cement inside a vertebral body is intravertebral (DESIGN.md §4): a leak's truth lies
    outside the body's interior, and its tract through the bone is the fill it comes from."""
    series = all_leaks.series[0]
    objects = {o.id: o for o in all_leaks.objects}
    leaks = [
        o
        for o in all_leaks.objects
        if o.connected_to and objects[o.connected_to].category == "intravertebral"
    ]
    assert {o.category for o in leaks} >= {"disc", "epidural", "foraminal", "paravertebral_vein"}
    for leak in leaks:
        fill = objects[leak.connected_to or 0]
        body = series.anatomy_labels == _label_id(all_leaks, f"vertebral_body_{fill.level}")
        voxels = series.truth_labels == leak.id
        assert not (voxels & ndimage.binary_erosion(body)).any(), leak.category
        grown = ndimage.binary_dilation(voxels, np.ones((3, 3, 3), bool))
        assert (grown & (series.truth_labels == fill.id)).any(), leak.category
