"""``cementscan analyze`` on a two-series DICOM study (the reference-case phantom written as DICOM)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import CliRun

from cementscan.findings import validate_findings
from cementscan.synth import make_phantom, preset_spec, write_phantom


@pytest.fixture(scope="module")
def dicom_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference-case")
    phantom = make_phantom(preset_spec("reference-case", seed=3, slice_mm=3.0, pixel_mm=2.0))
    write_phantom(phantom, out, dicom=True, png=False)
    return out


def test_two_series_study_gives_one_findings_file_and_a_label_map_per_series(
    dicom_study: Path, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    run = cli("analyze", dicom_study / "dicom", "--out", tmp_path, "--asymptomatic")
    assert run.code == 0, run.err
    data = json.loads((tmp_path / "findings.json").read_text())
    validate_findings(data)
    descriptions = [
        json.loads((dicom_study / "truth.json").read_text())["series"][n] for n in (0, 1)
    ]
    assert len(data["inputs"]) == 2
    assert data["management"]["inputs"]["symptoms"] == []
    ids = [f["id"] for f in data["findings"]]
    assert ids == list(range(1, len(ids) + 1))
    for n, record in enumerate(data["inputs"]):
        labels = sitk.ReadImage(str(tmp_path / f"cement_labels_{n}.nii.gz"))
        assert list(labels.GetSize()) == record["shape"] == descriptions[n]["shape"]
        in_map = set(np.unique(sitk.GetArrayFromImage(labels))) - {0}
        assert in_map == {f["id"] for f in data["findings"] if f["series_index"] == n}
    assert not (tmp_path / "cement_labels.nii.gz").exists()
    # One cast seen by both series is one IVC leak, not cut into vein pieces where the coarse
    # IVC mask is narrower than the cast, and not counted twice across the series.
    truth = json.loads((dicom_study / "truth.json").read_text())["summary"]
    assert data["summary"]["leaks"] == truth["leaks"] == {"paravertebral_vein": 1, "ivc": 1}
    assert data["summary"]["ivc"]["cranial_extent_level"] == truth["ivc"]["cranial_extent_level"]


def test_anatomy_none_is_said_and_keeps_every_candidate(
    dicom_study: Path, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    """DESIGN.md §5: anatomy failure degrades, never loses a candidate and never flips a side."""
    with_anatomy = cli("analyze", dicom_study / "dicom", "--out", tmp_path / "a")
    without = cli("analyze", dicom_study / "dicom", "--out", tmp_path / "b", "--anatomy", "none")
    assert with_anatomy.code == without.code == 0
    a = json.loads((tmp_path / "a" / "findings.json").read_text())
    b = json.loads((tmp_path / "b" / "findings.json").read_text())
    assert any("--anatomy none" in w for w in b["warnings"])
    assert b["anatomy"]["level_anchor"] == "none"
    assert all(f["level"] is None for f in b["findings"])
    assert a["findings"], "the reference case has cement"
    side_a = {f["id"]: f["side"] for f in a["findings"]}
    side_b = {f["id"]: f["side"] for f in b["findings"]}
    for n in range(len(a["inputs"])):
        labels_a = sitk.GetArrayFromImage(
            sitk.ReadImage(str(tmp_path / "a" / f"cement_labels_{n}.nii.gz"))
        )
        labels_b = sitk.GetArrayFromImage(
            sitk.ReadImage(str(tmp_path / "b" / f"cement_labels_{n}.nii.gz"))
        )
        assert not np.any((labels_a > 0) & (labels_b == 0)), (
            "a cement voxel was lost without anatomy"
        )
        for id_a in set(np.unique(labels_a)) - {0}:
            overlapping = set(np.unique(labels_b[labels_a == id_a])) - {0}
            for id_b in overlapping:
                pair = {side_a[int(id_a)], side_b[int(id_b)]}
                assert pair != {"right", "left"}, f"finding {id_a} flipped side without anatomy"


def test_report_rerenders_with_new_symptoms_and_refuses_another_input(
    dicom_study: Path, tmp_path: Path, cli: Callable[..., CliRun], shared_data: Path
) -> None:
    out = tmp_path / "out"
    assert cli("analyze", dicom_study / "dicom", "--out", out, "--asymptomatic").code == 0
    labels_before = (out / "cement_labels_0.nii.gz").read_bytes()
    findings_before = json.loads((out / "findings.json").read_text())
    run = cli("report", out, "--input", dicom_study / "dicom", "--symptoms", "dyspnea")
    assert run.code == 0, run.err
    after = json.loads((out / "findings.json").read_text())
    validate_findings(after)
    assert after["management"]["inputs"]["symptoms"] == ["dyspnea"]
    assert findings_before["management"]["inputs"]["symptoms"] == []
    assert after["findings"] == findings_before["findings"]  # not re-analysed
    assert (out / "cement_labels_0.nii.gz").read_bytes() == labels_before
    assert "dyspnea" in (out / "report.html").read_text()
    wrong = cli("report", out, "--input", shared_data / "lumbar-crop" / "ct.nii.gz")
    assert wrong.code == 2
    assert "no longer matches" in wrong.err and len(wrong.err.strip().splitlines()) == 1
