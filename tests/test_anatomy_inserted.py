"""Anatomy on a real CT with cement inserted: the cement must not move the discs or the IVC.

Cement is placed by ``insert`` from the shipped TotalSegmentator labels (never from cementscan's
anatomy); the anatomy is then measured against the same labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cementscan.anatomy import compute_anatomy
from cementscan.anatomy.model import Anatomy
from cementscan.synth.insert import InsertResult, insert_cement
from cementscan.synth.insert_spec import InsertSpec

ABDOMEN = "abdomen-native-3mm"
# Specs as in benchmarks/validation_specs/tuning/abdomen-native-3mm (L5_alone, L3_vein_ivc_L1).
CEMENTED_L5 = {
    "seed": 204,
    "objects": [
        {"type": "intravertebral", "level": "L5", "volume_ml": 7, "hu": 2800, "fill": "bipedicular"}
    ],
}
IVC_CAST = {
    "seed": 201,
    "objects": [
        {
            "type": "intravertebral",
            "level": "L3",
            "volume_ml": 5,
            "hu": 2200,
            "fill": "bipedicular",
        },
        {"type": "ivc_cast", "from_level": "L3", "to_level": "L1"},
    ],
}
MAX_IVC_OFFSET_MM = 12.0  # a lumen radius: the centreline stays inside the vein


def _inserted(shared_data: Path, spec: dict) -> tuple[InsertResult, Anatomy]:
    result = insert_cement(shared_data / ABDOMEN / "ct.nii.gz", InsertSpec.from_dict(spec))
    return result, compute_anatomy(result.ct)


def _object_lps(result: InsertResult, object_id: int) -> np.ndarray:
    ijk = np.argwhere(result.truth_labels == object_id).astype(float)
    affine = result.ct.affine_lps
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@pytest.fixture(scope="module")
def cemented_l5(shared_data: Path) -> tuple[InsertResult, Anatomy]:
    return _inserted(shared_data, CEMENTED_L5)


def test_cemented_body_keeps_its_discs_and_the_sacrum(
    cemented_l5: tuple[InsertResult, Anatomy],
) -> None:
    """7 ml of cement filling L5: its partial-volume rim must not read as an endplate, so the
    L5/S1 disc stays below the cement and the sacrum still anchors the levels."""
    result, anatomy = cemented_l5
    assert anatomy.level_anchor == "sacrum", anatomy.warnings
    cement = _object_lps(result, 1)
    in_body = anatomy.mask_at("vertebral_body_L5", cement).mean()
    in_discs = sum(
        anatomy.mask_at(name, cement).mean() for name in anatomy.masks if name.startswith("disc_")
    )
    print(f"L5 cement: {in_body:.2f} in vertebral_body_L5, {in_discs:.2f} in discs")
    assert in_body >= 0.5
    assert in_discs <= 0.15


def test_ivc_centreline_follows_a_cemented_ivc(shared_data: Path) -> None:
    """A cast filling the IVC from L3 to L1 is still the vein's lumen: the traced centreline
    stays within a lumen radius of the reference IVC's centre on every slice."""
    _result, anatomy = _inserted(shared_data, IVC_CAST)
    folder = shared_data / ABDOMEN
    image = sitk.ReadImage(str(folder / "labels.nii.gz"))
    names = {v: int(k) for k, v in json.loads((folder / "labels.json").read_text()).items()}
    kji = np.argwhere(sitk.GetArrayFromImage(image) == names["inferior_vena_cava"])
    ref = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in kji])
    offsets = []
    for x, y, z in anatomy.ivc_centerline_lps_mm:
        near = ref[np.abs(ref[:, 2] - z) <= 1.5]
        if len(near):
            offsets.append(float(np.hypot(*(near[:, :2].mean(axis=0) - (x, y)))))
    print(f"IVC centreline offsets (mm): median {np.median(offsets):.1f}, max {max(offsets):.1f}")
    assert len(offsets) >= 40
    assert max(offsets) <= MAX_IVC_OFFSET_MM
