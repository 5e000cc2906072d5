"""Choosing series in a DICOM folder (DESIGN.md §2): one reconstruction per body region, the soft
kernel before the bone kernel and 1-3 mm before sub-millimetre slices; the rest skipped with
reasons; ``--series`` overrides; slices load in anatomical order whatever their names."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_io import MR_IMAGE_STORAGE, PORTAL, clone, read_slices, write_slices
from pydicom.dataset import Dataset

from cementscan.io import load_study, load_volume
from cementscan.io.series import is_sharp_kernel

Cli = Callable[..., Any]


@pytest.fixture(scope="module")
def portal(shared_data: Path) -> list[Dataset]:
    return read_slices(shared_data / PORTAL)


@pytest.fixture(scope="module")
def study_folder(portal: list[Dataset], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One patient's folder: the soft-kernel series, a bone-kernel and a sub-millimetre
    reconstruction of the same slices, a localizer and an MR series, in sub-folders."""
    root = tmp_path_factory.mktemp("study")
    slab = portal[18:30]
    # DESIGN ranks 1-3 mm slices first; the portal series' real 5 mm thickness falls outside
    # that rule, so the soft series is labelled 2.5 mm (positions stay 5 mm apart).
    soft = clone(slab, True, SeriesNumber=2, ConvolutionKernel="STANDARD", SliceThickness=2.5)
    bone = clone(slab, True, SeriesNumber=3, ConvolutionKernel="BONE", SliceThickness=2.5,
                 SeriesDescription="bone")  # fmt: skip
    thin = clone(slab, True, SeriesNumber=4, ConvolutionKernel="STANDARD", SliceThickness=0.625)
    scout = clone(slab[:1], True, SeriesNumber=1, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                  ImageOrientationPatient=[1, 0, 0, 0, 0, -1])  # fmt: skip
    mr = clone(slab, True, SeriesNumber=5, Modality="MR", SOPClassUID=MR_IMAGE_STORAGE)
    for name, series in [
        ("soft", soft),
        ("bone", bone),
        ("thin", thin),
        ("scout", scout),
        ("mr", mr),
    ]:
        write_slices(series, root / name)
    uids = {name: s[0].SeriesInstanceUID for name, s in
            [("soft", soft), ("bone", bone), ("thin", thin), ("scout", scout), ("mr", mr)]}  # fmt: skip
    return {"root": root, "uids": uids}


def info_json(cli: Cli, *args: str | Path) -> dict[str, Any]:
    run = cli("info", *args, "--json")
    assert run.code == 0, run.err
    result: dict[str, Any] = json.loads(run.out)
    return result


def test_soft_kernel_series_is_chosen_and_the_others_skipped_with_reasons(
    cli: Cli, study_folder: dict[str, Any]
) -> None:
    uids = study_folder["uids"]
    info = info_json(cli, study_folder["root"])
    assert [s["series_uid"] for s in info["series"]] == [uids["soft"]]
    assert info["convolution_kernel"] == "STANDARD" and info["shape"] == [512, 512, 12]

    reasons = {s["series_uid"]: s["reason"] for s in info["skipped_series"]}
    assert set(reasons) == {uids["bone"], uids["thin"], uids["scout"], uids["mr"]}
    assert "BONE" in reasons[uids["bone"]] and uids["soft"] in reasons[uids["bone"]]
    assert "0.625 mm" in reasons[uids["thin"]] and uids["soft"] in reasons[uids["thin"]]
    assert "localizer" in reasons[uids["scout"]]
    assert "modality MR" in reasons[uids["mr"]]


def test_series_option_picks_the_bone_reconstruction(
    cli: Cli, study_folder: dict[str, Any]
) -> None:
    uids = study_folder["uids"]
    info = info_json(cli, study_folder["root"], "--series", uids["bone"])
    assert [s["series_uid"] for s in info["series"]] == [uids["bone"]]
    assert info["convolution_kernel"] == "BONE" and info["series_description"] == "bone"
    skipped = {s["series_uid"] for s in info["skipped_series"]}
    assert skipped == {uids["soft"], uids["thin"], uids["scout"], uids["mr"]}
    assert all("--series" in s["reason"] for s in info["skipped_series"])


def test_series_option_naming_the_mr_series_is_refused(
    cli: Cli, study_folder: dict[str, Any]
) -> None:
    run = cli("info", study_folder["root"], "--series", study_folder["uids"]["mr"])
    assert run.code == 2
    assert "modality MR" in run.err and len(run.err.splitlines()) == 1


def test_bone_and_soft_series_hold_the_same_voxels(study_folder: dict[str, Any]) -> None:
    """The control for the choice: only the kernel label tells the two apart."""
    uids = study_folder["uids"]
    soft = load_study([study_folder["root"]]).volumes[0]
    bone = load_study([study_folder["root"]], series_uid=uids["bone"]).volumes[0]
    assert soft.source.series_uid == uids["soft"] and bone.source.series_uid == uids["bone"]
    assert np.array_equal(soft.hu, bone.hu)


@pytest.mark.parametrize(
    ("kernel", "sharp"),
    [("BONE", True), ("B70f", True), ("Br64d", True), ("LUNG", True), ("STANDARD", False),
     ("SOFT", False), ("B30f", False), ("Br38f\\3", False), (None, False)],
)  # fmt: skip
def test_kernel_names(kernel: str | None, sharp: bool) -> None:
    assert is_sharp_kernel(kernel) is sharp


def test_bone_kernel_named_the_siemens_way_is_skipped_too(
    portal: list[Dataset], tmp_path: Path
) -> None:
    slab = portal[18:26]
    bone = clone(slab, True, SeriesNumber=2, ConvolutionKernel="B70f", SliceThickness=2.0)
    soft = clone(slab, True, SeriesNumber=3, ConvolutionKernel="B30f", SliceThickness=2.0)
    write_slices(bone, tmp_path / "a")
    write_slices(soft, tmp_path / "b")
    study = load_study([tmp_path])
    assert [v.source.series_uid for v in study.volumes] == [soft[0].SeriesInstanceUID]
    assert [s.series_uid for s in study.skipped] == [bone[0].SeriesInstanceUID]
    assert "B70f" in study.skipped[0].reason


def test_two_series_of_different_regions_are_both_chosen(
    cli: Cli, portal: list[Dataset], tmp_path: Path
) -> None:
    lower = clone(portal[:20], True, SeriesNumber=2)
    upper = clone(portal[20:40], True, SeriesNumber=3)
    write_slices(lower, tmp_path / "study" / "lower")
    write_slices(upper, tmp_path / "study" / "upper")
    info = info_json(cli, tmp_path / "study")
    assert info["skipped_series"] == []
    by_uid = {s["series_uid"]: s for s in info["series"]}
    assert set(by_uid) == {lower[0].SeriesInstanceUID, upper[0].SeriesInstanceUID}
    z_lower = by_uid[lower[0].SeriesInstanceUID]["origin_lps_mm"][2]
    z_upper = by_uid[upper[0].SeriesInstanceUID]["origin_lps_mm"][2]
    assert z_upper - z_lower == pytest.approx(20 * 5.0, abs=1e-3)
    assert all(s["shape"] == [512, 512, 20] for s in info["series"])


def test_shuffled_and_renamed_slices_load_in_anatomical_order(
    shared_data: Path, portal: list[Dataset], tmp_path: Path
) -> None:
    original = load_volume(shared_data / PORTAL)
    start, stop = 10, 25
    slab = clone(portal[start:stop])
    numbers = list(range(1, len(slab) + 1))
    random.Random(7).shuffle(numbers)
    for ds, number in zip(slab, numbers, strict=True):
        ds.InstanceNumber = number
    names = [f"IM{len(slab) - n:04d}" for n in range(len(slab))]  # names run feet-ward
    order = list(range(len(slab)))
    random.Random(3).shuffle(order)  # and the files are written in no order at all
    write_slices([slab[n] for n in order], tmp_path / "shuffled", [names[n] for n in order])

    volume = load_volume(tmp_path / "shuffled")
    assert np.array_equal(volume.hu, original.hu[:, :, start:stop])
    np.testing.assert_allclose(
        volume.origin_lps_mm, original.index_to_lps([0, 0, start]), atol=1e-4
    )
    np.testing.assert_allclose(volume.direction, original.direction)
    assert volume.spacing_mm == pytest.approx(original.spacing_mm)
