"""``cementscan anatomy``: anatomy.json, a label map on the input's own grid, names, overview PNG."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from conftest import CliRun


def _check_outputs(out: Path, ct: Path) -> dict[str, object]:
    data = json.loads((out / "anatomy.json").read_text())
    for key in ("level_anchor", "level_confidence", "vertebrae", "lungs", "ivc", "coverage"):
        assert key in data, key
    labels = sitk.ReadImage(str(out / "anatomy_labels.nii.gz"))
    reference = sitk.ReadImage(str(ct))
    assert labels.GetSize() == reference.GetSize()
    assert np.allclose(labels.GetOrigin(), reference.GetOrigin())
    assert np.allclose(labels.GetDirection(), reference.GetDirection())
    names = json.loads((out / "anatomy_labels.json").read_text())
    present = set(np.unique(sitk.GetArrayFromImage(labels))) - {0}
    assert {int(k) for k in names} >= present
    assert (out / "anatomy_overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return {"data": data, "names": set(names.values())}


def test_anatomy_command_on_abdomen(
    shared_data: Path, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    ct = shared_data / "abdomen-native-3mm" / "ct.nii.gz"
    run = cli("anatomy", ct, "--out", tmp_path)
    assert run.code == 0, run.err
    checked = _check_outputs(tmp_path, ct)
    data = checked["data"]
    assert isinstance(data, dict)
    assert data["level_anchor"] == "sacrum"
    levels = [v["level"] for v in data["vertebrae"]]
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(levels)
    assert len(data["ivc"]["centerline_lps_mm"]) > 20
    assert data["contrast_phase"] == "native"
    assert {"lumbar_spine", "abdomen"} <= set(data["coverage"])
    names = checked["names"]
    assert isinstance(names, set)
    assert {"vertebral_body_L3", "disc_L3_L4", "spinal_canal", "ivc", "aorta"} <= names


def test_anatomy_command_with_totalsegmentator_masks(
    shared_data: Path, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    folder = shared_data / "chest-cta"
    run = cli(
        "anatomy",
        folder / "ct.nii.gz",
        "--out",
        tmp_path,
        "--anatomy-masks",
        folder / "labels.nii.gz",
    )
    assert run.code == 0, run.err
    checked = _check_outputs(tmp_path, folder / "ct.nii.gz")
    data = checked["data"]
    assert isinstance(data, dict)
    assert data["level_anchor"] == "imported"
    assert data["lungs"]["right"]["volume_ml"] > 500
    names = checked["names"]
    assert isinstance(names, set)
    assert {"lung_right", "lung_left", "heart", "ivc", "svc", "vertebral_body_T8"} <= names


def test_anatomy_command_bad_masks_path_is_exit_2(
    shared_data: Path, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    ct = shared_data / "lumbar-crop" / "ct.nii.gz"
    run = cli("anatomy", ct, "--out", tmp_path, "--anatomy-masks", tmp_path / "missing")
    assert run.code == 2
    assert "missing" in run.err and "no such file" in run.err
