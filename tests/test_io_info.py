"""`cementscan info --json` on every real CT in the shared data: the geometry and the voxels the
loader reports are exactly SimpleITK's (DESIGN.md §3: voxel-index order, LPS millimetres)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from helpers_io import (
    ABDOMEN,
    CHEST,
    J2K,
    LUMBAR,
    MEDIASTINUM,
    PORTAL,
    direction_3x3,
    ijk,
    sitk_read,
)

import cementscan.cli.info
from cementscan.cli.main import main
from cementscan.io import Study, load_study
from cementscan.io.dicom import scan_folder

# input (relative to the shared data) -> (format, orientation code as stored)
INPUTS = {
    f"{ABDOMEN}/ct.nii.gz": ("nifti", "RAS"),
    f"{CHEST}/ct.nii.gz": ("nifti", "LAS"),
    f"{LUMBAR}/ct.nii.gz": ("nifti", "PIR"),
    f"{MEDIASTINUM}/ct.nii.gz": ("nifti", "LPS"),
    PORTAL: ("dicom", "LPS"),
    J2K: ("dicom", "LPS"),
}
REQUIRED = ("shape", "spacing_mm", "origin_lps_mm", "direction", "modality", "hu_min", "hu_max",
            "series_uid", "format")  # fmt: skip


@functools.cache
def run_info(path: Path) -> tuple[dict[str, Any], Study]:
    """`cementscan info PATH --json` in-process (once per path); also returns the Study the
    command loaded."""
    loaded: list[Study] = []

    def spy(*args: Any, **kwargs: Any) -> Study:
        study = load_study(*args, **kwargs)
        loaded.append(study)
        return study

    out = io.StringIO()
    with mock.patch.object(cementscan.cli.info, "load_study", spy), contextlib.redirect_stdout(out):
        code = main(["info", str(path), "--json"])
    assert code == 0
    return json.loads(out.getvalue()), loaded[0]


@pytest.fixture(scope="module", params=list(INPUTS), ids=lambda p: p.split("/")[0])
def case(request: pytest.FixtureRequest, shared_data: Path) -> dict[str, Any]:
    path = shared_data / request.param
    info, study = run_info(path)
    return {"name": request.param, "path": path, "info": info, "study": study,
            "sitk": sitk_read(path)}  # fmt: skip


def test_info_reports_every_required_field(case: dict[str, Any]) -> None:
    info = case["info"]
    missing = [key for key in REQUIRED if key not in info]
    assert not missing, missing
    fmt, _ = INPUTS[case["name"]]
    assert info["format"] == fmt
    assert info["modality"] == "CT"
    assert isinstance(info["hu_min"], int) and isinstance(info["hu_max"], int)
    assert -3100 <= info["hu_min"] < -500 < 1000 < info["hu_max"] <= 4000
    assert len(info["series"]) == 1 and info["series"][0]["shape"] == info["shape"]
    assert info["skipped_series"] == []


def test_info_geometry_equals_simpleitk(case: dict[str, Any]) -> None:
    info, image = case["info"], case["sitk"]
    assert info["shape"] == list(image.GetSize())
    np.testing.assert_allclose(info["spacing_mm"], image.GetSpacing(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(info["origin_lps_mm"], image.GetOrigin(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(info["direction"], direction_3x3(image), rtol=0, atol=1e-6)
    assert info["orientation"] == INPUTS[case["name"]][1]


def test_info_hu_equals_simpleitk_voxel_for_voxel(case: dict[str, Any]) -> None:
    volume = case["study"].volumes[0]
    reference = ijk(case["sitk"])
    assert volume.hu.dtype == np.int16
    assert volume.hu.shape == reference.shape
    assert np.array_equal(volume.hu, reference)
    assert (case["info"]["hu_min"], case["info"]["hu_max"]) == (reference.min(), reference.max())


def test_loaded_volume_maps_indices_like_simpleitk(case: dict[str, Any]) -> None:
    """index_to_lps / lps_to_index agree with SimpleITK at the corners and a fractional point."""
    volume, image = case["study"].volumes[0], case["sitk"]
    size = np.asarray(image.GetSize()) - 1
    points = [[0, 0, 0], size.tolist(), [size[0], 0, size[2]], [2.5, size[1] / 3, 1.25]]
    for point in points:
        expected = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in point])
        np.testing.assert_allclose(volume.index_to_lps(point), expected, atol=1e-4)
        np.testing.assert_allclose(volume.lps_to_index(expected), point, atol=1e-6)
    np.testing.assert_allclose(volume.affine_lps[:3, 3], image.GetOrigin(), atol=1e-4)


def test_dicom_series_uid_is_reported(shared_data: Path) -> None:
    info, _ = run_info(shared_data / PORTAL)
    assert info["series_uid"] == "1.3.6.1.4.1.14519.5.2.1.9203.8273.286130801613533577338339572281"
    assert info["series_uid_generated"] is False
    assert info["slices"] == 51


def test_blank_series_uid_gets_a_stable_valid_uid(shared_data: Path) -> None:
    info, _ = run_info(shared_data / J2K)
    uid = info["series_uid"]
    assert info["series_uid_generated"] is True
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)+", uid) and len(uid) <= 64
    # the same UID on another scan of the folder (it names the series in outputs)
    assert scan_folder(shared_data / J2K)[0].series_uid == uid
    assert info["convolution_kernel"] is not None and info["slice_thickness_mm"] == 3.0


def test_info_text_names_orientation_and_shape(cli: Any, shared_data: Path) -> None:
    run = cli("info", shared_data / ABDOMEN / "ct.nii.gz")
    assert run.code == 0, run.err
    assert "RAS" in run.out and "(122, 101, 112)" in run.out
