"""The findings contract: schema and vocabulary agree, the writer validates, outputs are atomic."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import CliRun

from cementscan.findings import (
    AnatomyRecord,
    Finding,
    FindingsDocument,
    InputRecord,
    IvcSummary,
    Management,
    PceSummary,
    RegionSummary,
    Summary,
    findings_schema,
    validate_findings,
    write_findings,
)
from cementscan.findings import vocabulary as vocab
from cementscan.synth import make_phantom, preset_spec, write_phantom


def _schema_enum(*path: str) -> list[object]:
    node: object = findings_schema()
    for key in path:
        assert isinstance(node, dict)
        node = node[key]
    assert isinstance(node, dict)
    return list(node["enum"])


def test_schema_enums_are_the_vocabulary() -> None:
    finding = ("$defs", "finding", "properties")
    assert _schema_enum(*finding, "category") == list(vocab.CATEGORIES)
    assert _schema_enum(*finding, "category_basis") == list(vocab.CATEGORY_BASES)
    assert _schema_enum(*finding, "yeom_type") == [*vocab.YEOM_TYPES, None]
    assert _schema_enum(*finding, "shape") == list(vocab.SHAPES)
    assert _schema_enum(*finding, "side") == list(vocab.SIDES)
    assert _schema_enum(*finding, "lung_zone") == [*vocab.LUNG_ZONES, None]
    assert _schema_enum("properties", "anatomy", "properties", "level_anchor") == list(
        vocab.LEVEL_ANCHORS
    )
    inputs = ("$defs", "input", "properties")
    assert _schema_enum(*inputs, "contrast_phase") == list(vocab.CONTRAST_PHASES)
    assert _schema_enum(*inputs, "format") == list(vocab.INPUT_FORMATS)
    pce = ("$defs", "summary", "properties", "pce", "properties")
    assert _schema_enum(*pce, "laterality") == list(vocab.LATERALITIES)
    assert _schema_enum(*pce, "predominance") == list(vocab.PREDOMINANCES)
    assert _schema_enum(*pce, "zone_predominance") == list(vocab.ZONE_PREDOMINANCES)
    leaks = findings_schema()["$defs"]["summary"]["properties"]["leaks"]["propertyNames"]["enum"]
    assert leaks == list(vocab.LEAK_CATEGORIES)


def _finding(**overrides: object) -> Finding:
    fields: dict[str, object] = dict(
        id=1,
        series_index=0,
        category="pulmonary_artery",
        category_basis="anatomy",
        centroid_lps_mm=(-60.0, 20.0, 150.0),
        bbox_lps_mm=((-65.0, 18.0, 140.0), (-55.0, 22.0, 160.0)),
        volume_ml=0.05,
        length_mm=12.0,
        max_diameter_mm=2.1,
        shape="linear",
        mean_hu=1900.0,
        max_hu=3071.0,
        side="right",
        confidence=0.9,
        level="T9",
        lung_zone="lower",
        central=False,
    )
    fields.update(overrides)
    return Finding(**fields)  # type: ignore[arg-type]


def _document(*findings: Finding) -> FindingsDocument:
    return FindingsDocument(
        software={"name": "cementscan", "version": "test"},
        inputs=(
            InputRecord(
                path="ct.nii.gz",
                format="nifti",
                series_uid=None,
                shape=(10, 10, 10),
                spacing_mm=(1.0, 1.0, 3.0),
                coverage=("chest",),
            ),
        ),
        anatomy=AnatomyRecord(levels=("T8", "T9"), level_anchor="first_rib", level_confidence=0.8),
        findings=findings,
        summary=Summary(
            treated_levels=(),
            leak_present=bool(findings),
            leaks={"pulmonary_artery": len(findings)},
            ivc=IvcSummary(assessable=False, present=None),
            right_heart=RegionSummary(assessable=True, present=False),
            pce=PceSummary(
                assessable=True,
                present=True,
                count=len(findings),
                laterality="right",
                predominance="right",
                zone_predominance="lower",
                most_proximal="peripheral",
                max_length_mm=12.0,
            ),
        ),
        management=Management(suggestion="clinical follow-up", basis=("Krueger 2009",)),
    )


def test_a_full_document_validates_and_round_trips(tmp_path: Path) -> None:
    path = write_findings(_document(_finding()), tmp_path / "findings.json")
    data = json.loads(path.read_text())
    validate_findings(data)
    assert data["schema"] == "cementscan.findings/1"
    assert next(iter(data)) == "schema"
    assert data["findings"][0]["centroid_lps_mm"] == [-60.0, 20.0, 150.0]


@pytest.mark.parametrize(
    "overrides",
    [
        {"category": "lung"},  # not in the vocabulary
        {"side": "Right"},
        {"yeom_type": "X"},
        {"level": "L7"},
        {"confidence": 1.5},
        {"volume_ml": -0.1},
    ],
)
def test_the_writer_refuses_a_document_that_breaks_the_contract(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    with pytest.raises(jsonschema.ValidationError):
        write_findings(_document(_finding(**overrides)), tmp_path / "findings.json")
    assert list(tmp_path.iterdir()) == []


def test_analyze_on_real_ct_without_cement(
    shared_data: Path, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    """abdomen-native-3mm holds a metal femoral implant and calcifications, and no cement."""
    ct = shared_data / "abdomen-native-3mm" / "ct.nii.gz"
    run = cli("analyze", ct, "--out", tmp_path / "out")
    assert run.code == 0, run.err
    data = json.loads((tmp_path / "out" / "findings.json").read_text())
    validate_findings(data)
    assert data["findings"] == []
    assert data["summary"]["leak_present"] is False
    assert data["summary"]["pce"]["present"] is None  # lung bases only: not assessable
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(data["anatomy"]["levels"])
    labels = sitk.ReadImage(str(tmp_path / "out" / "cement_labels.nii.gz"))
    reference = sitk.ReadImage(str(ct))
    assert labels.GetSize() == reference.GetSize()
    assert np.allclose(labels.GetOrigin(), reference.GetOrigin())
    assert np.allclose(labels.GetDirection(), reference.GetDirection())
    assert not sitk.GetArrayFromImage(labels).any()


@pytest.mark.parametrize("orientation", ["RAS", "PIR"])
def test_findings_match_their_labels_and_sides_in_any_storage_order(
    tmp_path: Path, cli: Callable[..., CliRun], orientation: str
) -> None:
    """The reference case's lumbar series stored RAS or PIR: the right-sided L4 cement, its vein
    and the IVC cast must come out on the patient's right, and each finding's centroid must be
    its label voxels' centroid in physical space."""
    spec = preset_spec(
        "reference-case", seed=0, slice_mm=3.0, pixel_mm=2.0, orientation=orientation
    )
    phantom = make_phantom(spec)
    write_phantom(phantom, tmp_path / "ph", png=False)
    run = cli(
        "analyze", tmp_path / "ph" / "ct_0.nii.gz", "--out", tmp_path / "out", "--formats", "json"
    )
    assert run.code == 0, run.err
    data = json.loads((tmp_path / "out" / "findings.json").read_text())
    labels = sitk.ReadImage(str(tmp_path / "out" / "cement_labels.nii.gz"))
    array = sitk.GetArrayFromImage(labels)  # (k, j, i)
    assert sorted(set(np.unique(array)) - {0}) == [f["id"] for f in data["findings"]]
    for finding in data["findings"]:
        kji = np.argwhere(array == finding["id"])
        points = [labels.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist()) for p in kji]
        assert np.allclose(np.mean(points, axis=0), finding["centroid_lps_mm"], atol=0.01)
    by_category = {f["category"]: f for f in data["findings"]}
    for category in ("intravertebral", "paravertebral_vein", "ivc"):
        assert by_category[category]["side"] == "right", category
    assert {t["level"] for t in data["summary"]["treated_levels"]} == {"L4", "L5"}


def test_outputs_are_all_or_nothing(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cementscan import pipeline

    result = pipeline.analyze([shared_data / "abdomen-native-3mm" / "ct.nii.gz"])

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_labels", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError):
        pipeline.write_outputs(result, out)
    assert list(out.iterdir()) == []


def test_output_folder_that_is_a_file_is_exit_2(
    shared_data: Path, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    target = tmp_path / "taken"
    target.write_text("user's file")
    run = cli("analyze", shared_data / "lumbar-crop" / "ct.nii.gz", "--out", target)
    assert run.code == 2
    assert "not a folder" in run.err and str(target) in run.err
    assert target.read_text() == "user's file"
