"""`cementscan insert`: cement placed from reference labels into real CT, and its truth."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import CliRun
from scipy import ndimage
from scipy.stats import median_abs_deviation

from cementscan.errors import InputError
from cementscan.io import load_volume
from cementscan.synth.insert import InsertResult, insert_cement, write_insert
from cementscan.synth.insert_spec import InsertSpec
from cementscan.synth.shapes import sample_inside

ABD_SPEC: dict[str, Any] = {
    "seed": 11,
    "objects": [
        {"type": "intravertebral", "level": "L3", "volume_ml": 5, "hu": 2200},
        {"type": "intravertebral", "level": "L1", "volume_ml": 4, "hu": 1800, "fill": "right"},
        {"type": "leak", "category": "disc", "from_level": "L3", "side": "left"},
        {"type": "leak", "category": "epidural", "from_level": "L1"},
        {"type": "leak", "category": "paravertebral_vein", "from_level": "L3", "side": "right"},
        {"type": "ivc_cast", "from_level": "L3", "to_level": "L1"},
    ],
}
CHEST_SPEC: dict[str, Any] = {
    "seed": 4,
    "objects": [
        {"type": "emboli", "count": 5, "side": {"right": 3, "left": 2}, "zone": "lower",
         "kinds": ["linear", "nodular"], "hu": 2000},
        {"type": "right_heart", "hu": 2500},
    ],
}  # fmt: skip


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _labels_lps(path: Path, like: sitk.Image) -> np.ndarray:
    """A reference label file on ``like``'s grid, resampled in physical space, as [i, j, k]."""
    img = sitk.Resample(sitk.ReadImage(str(path)), like, sitk.Transform(),
                        sitk.sitkNearestNeighbor, 0)  # fmt: skip
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def _names(path: Path) -> dict[str, int]:
    return {v: int(k) for k, v in json.loads(path.read_text()).items()}


class Case:
    def __init__(self, data: Path, name: str, spec: dict[str, Any], out: Path) -> None:
        self.folder = data / name
        self.input = self.folder / "ct.nii.gz"
        before = _hashes(self.folder)
        self.result: InsertResult = insert_cement(self.input, InsertSpec.from_dict(spec))
        write_insert(self.result, out)
        self.untouched = before == _hashes(self.folder)
        self.out = out
        self.in_img = sitk.ReadImage(str(self.input))
        self.out_img = sitk.ReadImage(str(out / "ct.nii.gz"))
        self.hu_in = load_volume(self.input).hu.astype(np.int32)
        self.hu_out = sitk.GetArrayFromImage(self.out_img).transpose(2, 1, 0).astype(np.int32)
        self.labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "truth_labels.nii.gz")))
        self.labels = self.labels.transpose(2, 1, 0)
        self.truth = json.loads((out / "truth.json").read_text())
        self.ref = _labels_lps(self.folder / "labels.nii.gz", self.out_img)
        self.names = _names(self.folder / "labels.json")

    def ref_mask(self, *names: str) -> np.ndarray:
        return np.isin(self.ref, [self.names[n] for n in names])

    def lps(self, ijk: np.ndarray) -> np.ndarray:
        img = self.out_img
        d = np.reshape(img.GetDirection(), (3, 3)) * np.asarray(img.GetSpacing())[None, :]
        return ijk @ d.T + np.asarray(img.GetOrigin())


@pytest.fixture(scope="module")
def abd(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return Case(shared_data, "abdomen-native-3mm", ABD_SPEC, tmp_path_factory.mktemp("abd"))


@pytest.fixture(scope="module")
def chest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return Case(shared_data, "chest-cta", CHEST_SPEC, tmp_path_factory.mktemp("chest"))


@pytest.fixture
def run_insert(cli: Callable[..., CliRun]) -> Callable[..., tuple[int, str, str]]:
    """``cementscan insert ...`` in-process: exit code, stdout, stderr."""

    def run(*args: str | Path) -> tuple[int, str, str]:
        result = cli("insert", *args)
        return result.code, result.out, result.err

    return run


def _objects(case: Case, category: str) -> list[dict[str, Any]]:
    return [o for o in case.truth["objects"] if o["category"] == category]


@pytest.mark.parametrize("which", ["abd", "chest"])
def test_same_geometry_and_changes_only_near_the_truth(
    which: str, request: pytest.FixtureRequest
) -> None:
    case: Case = request.getfixturevalue(which)
    assert case.untouched, "the input folder changed"
    a, b = case.in_img, case.out_img
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    assert np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    assert b.GetPixelID() == sitk.sitkInt16
    changed = case.hu_out != case.hu_in
    assert changed.sum() > 0
    near = ndimage.binary_dilation(case.labels > 0, iterations=4)
    assert not (changed & ~near).any(), "voxels changed away from any cement"


@pytest.mark.parametrize("which", ["abd", "chest"])
def test_each_object_lies_in_its_label_with_its_hu_and_centroid(
    which: str, request: pytest.FixtureRequest
) -> None:
    case: Case = request.getfixturevalue(which)
    intended = {
        "intravertebral": lambda o: case.ref_mask(f"vertebrae_{o['level']}"),
        "ivc": lambda o: case.ref_mask("inferior_vena_cava"),
        "pulmonary_artery": lambda o: case.ref_mask(
            *(n for n in case.names if n.startswith("lung_") and "lobe" in n)
        ),
        "right_heart": lambda o: case.ref_mask("heart"),
    }
    spacing = np.asarray(case.out_img.GetSpacing())
    checked = 0
    for o in case.truth["objects"]:
        vox = case.labels == o["id"]
        assert vox.sum() > 0, o
        if o["category"] in intended:
            assert not (vox & ~intended[o["category"]](o)).any(), o
            # Label voxels are not trimmed wholesale to fit the label: the shape itself fits.
            assert o.get("label_clipped_voxels", 0) <= 0.1 * o["label_voxels"], o
            checked += 1
        rise = case.hu_out[vox].astype(float) - case.hu_in[vox]
        target = o["hu"] - case.hu_in[vox].astype(float)
        # Partial volume allowed: the voxel most covered reaches at least 40% of the step
        # to the cement's HU, and big objects get there.
        frac = float((rise / target).max())
        assert frac > (0.85 if o["volume_ml"] > 1.0 else 0.4), (o["id"], o["category"], frac)
        idx = np.argwhere(vox).astype(float)
        centroid = case.lps(idx).mean(axis=0)
        assert np.all(np.abs(centroid - np.asarray(o["centroid_lps_mm"])) <= spacing + 1e-6), (
            o["category"], centroid, o["centroid_lps_mm"])  # fmt: skip
    assert checked >= 3


def test_intravertebral_stays_in_the_body_in_front_of_the_cord(abd: Case) -> None:
    cord = abd.ref_mask("spinal_cord")
    for o in _objects(abd, "intravertebral"):
        vox = np.argwhere(abd.labels == o["id"])
        for k in np.unique(vox[:, 2]):
            cord_k = np.argwhere(cord[:, :, k])
            if len(cord_k):
                front = abd.lps(np.c_[cord_k, np.full(len(cord_k), k)].astype(float))[:, 1].min()
                assert abd.lps(vox[vox[:, 2] == k].astype(float))[:, 1].max() < front


def test_emboli_are_apart_sided_and_zoned(chest: Case) -> None:
    emb = [o for o in chest.result.objects if o.category == "pulmonary_artery"]
    assert len(emb) == 5
    slice_mm = float(chest.out_img.GetSpacing()[2])
    clouds = [sample_inside(o.shape, 0.3)[0] for o in emb]
    for a in range(len(clouds)):
        for b in range(a + 1, len(clouds)):
            d = np.linalg.norm(clouds[a][::7, None, :] - clouds[b][None, ::7, :], axis=2).min()
            assert d >= 2 * slice_mm - 0.6, (a, b, d)
    cord = chest.ref_mask("spinal_cord")
    right = chest.ref_mask(
        *(n for n in chest.names if n.startswith("lung_") and n.endswith("right"))
    )
    sides = {"right": 0, "left": 0}
    for o in _objects(chest, "pulmonary_artery"):
        vox = np.argwhere(chest.labels == o["id"])
        in_right = right[tuple(vox.T)].mean()
        assert o["side"] == ("right" if in_right > 0.5 else "left"), o
        k = int(np.median(vox[:, 2]))
        cord_k = np.argwhere(cord[:, :, k])
        cord_x = chest.lps(np.c_[cord_k, np.full(len(cord_k), k)].astype(float))[:, 0].mean()
        x = o["centroid_lps_mm"][0]
        assert (x < cord_x) == (o["side"] == "right"), (o, cord_x)
        assert o["lung_zone"] == "lower" and o["central"] is False
        sides[o["side"]] += 1
    assert sides == {"right": 3, "left": 2}
    pce = chest.truth["summary"]["pce"]
    assert (pce["count"], pce["laterality"], pce["zone_predominance"]) == (5, "bilateral", "lower")
    assert chest.truth["summary"]["right_heart"]["present"] is True


def test_noise_in_the_cement_is_the_scans(abd: Case) -> None:
    (blob,) = [o for o in _objects(abd, "intravertebral") if o["level"] == "L3"]
    core = ndimage.binary_erosion(abd.labels == blob["id"], iterations=1)
    assert core.sum() >= 20
    inside = abd.hu_out[core].astype(float)
    # The scan's own noise, measured independently: SD in 3x3 in-plane patches of back muscle.
    muscle = ndimage.binary_erosion(abd.ref_mask("autochthon_right"), iterations=2)
    hu = abd.hu_in.astype(float)
    mean = ndimage.uniform_filter(hu, size=(3, 3, 1))
    sq = ndimage.uniform_filter(hu * hu, size=(3, 3, 1))
    sd_scan = float(np.median(np.sqrt(np.maximum(sq - mean * mean, 0))[muscle]) * 1.06)
    # Robust SD: a one-voxel erosion still keeps a few partial-volume voxels where the fill
    # narrows (the tract toward a leak), and those are not noise.
    sd_cement = float(median_abs_deviation(inside, scale="normal"))
    assert 0.5 * sd_scan <= sd_cement <= 2.0 * sd_scan, (sd_scan, sd_cement)


def test_ivc_cast_reaches_the_level_asked(abd: Case) -> None:
    (cast,) = _objects(abd, "ivc")
    assert abd.truth["summary"]["ivc"]["cranial_extent_level"] == "L1"
    assert abd.truth["summary"]["ivc"]["caudal_extent_level"] == "L3"
    top_z = abd.lps(np.argwhere(abd.labels == cast["id"]).astype(float))[:, 2].max()
    l1 = abd.lps(np.argwhere(abd.ref_mask("vertebrae_L1")).astype(float))[:, 2]
    l2 = abd.lps(np.argwhere(abd.ref_mask("vertebrae_L2")).astype(float))[:, 2]
    assert l2.max() < top_z <= l1.max() + 3.0
    assert cast["connected_to"] == _objects(abd, "paravertebral_vein")[0]["id"]
    leaks = abd.truth["summary"]["leaks"]
    assert leaks == {"disc": 1, "epidural": 1, "paravertebral_vein": 1, "ivc": 1}


def test_j2k_dicom_positions_are_physical(
    shared_data: Path, tmp_path: Path, run_insert: Any
) -> None:
    folder = shared_data / "upper-abdomen-dicom-j2k"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"seed": 1, "objects": [
        {"type": "intravertebral", "level": "T12", "volume_ml": 4, "hu": 2000}]}))  # fmt: skip
    before = _hashes(folder)
    code, _, err = run_insert(folder / "dicom", "--out", tmp_path / "o", "--spec", spec)
    assert code == 0, err
    assert before == _hashes(folder)
    lab_img = sitk.ReadImage(str(tmp_path / "o" / "truth_labels.nii.gz"))
    truth = sitk.GetArrayFromImage(lab_img).transpose(2, 1, 0)
    ref = _labels_lps(folder / "labels.nii.gz", lab_img)
    t12 = ref == _names(folder / "labels.json")["vertebrae_T12"]
    vox = truth == 1
    assert vox.sum() > 100 and not (vox & ~t12).any()
    # The labels are stored y-flipped: only physical-space mapping puts T12 on bone.
    hu = load_volume(folder / "dicom").hu
    assert np.median(hu[t12]) > 150


BAD_SPECS = [
    ({"objects": []}, "objects"),
    ({"objects": [{"type": "blob"}]}, "type"),
    ({"objects": [{"type": "intravertebral", "level": "L3", "volume_ml": 20}]}, "volume_ml"),
    ({"objects": [{"type": "leak", "category": "disc", "from_level": "L3"}]}, "intravertebral"),
    ({"objects": [{"type": "intravertebral", "level": "T5"}]}, "vertebrae_T5"),
    ({"objects": [{"type": "emboli", "count": 3}]}, "lung"),
    ({"objects": [{"type": "ivc_cast", "from_level": "L1", "to_level": "L3"}]}, "below"),
    ({"seed": 1, "objects": [{"type": "at", "center_lps_mm": [0, 0]}]}, "center_lps_mm"),
]


@pytest.mark.parametrize(("spec", "word"), BAD_SPECS)
def test_bad_specs_exit_2_with_one_line(
    spec: dict[str, Any], word: str, shared_data: Path, tmp_path: Path, run_insert: Any
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    ct = shared_data / "abdomen-native-3mm" / "ct.nii.gz"
    code, _, err = run_insert(ct, "--out", tmp_path / "o", "--spec", path)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and word in err, err
    assert not (tmp_path / "o" / "truth.json").exists()


def test_spec_errors_name_the_field() -> None:
    with pytest.raises(InputError, match=r"objects\[0\] \(emboli\)\.side"):
        InsertSpec.from_dict({"objects": [{"type": "emboli", "count": 3,
                                           "side": {"right": 1, "left": 1}}]})  # fmt: skip
    with pytest.raises(InputError, match="unknown field"):
        InsertSpec.from_dict({"objects": [{"type": "right_heart", "colour": "red"}]})
    spec = InsertSpec.from_dict({"objects": [{"type": "emboli", "count": 3, "side": "bilateral"}]})
    assert spec.objects[0].side_counts == {"right": 2, "left": 1}
