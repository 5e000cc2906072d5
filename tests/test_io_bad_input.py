"""Bad input is refused cleanly: exit code 2, one line on stderr naming the problem (and the file
where there is one), no traceback, and nothing written (DESIGN.md §2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from helpers_io import (
    ABDOMEN,
    MR_IMAGE_STORAGE,
    PORTAL,
    clone,
    nifti_image,
    patch_nifti1,
    read_slices,
    set_pixels,
    shift_position,
    write_slices,
)
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

Cli = Callable[..., Any]


def assert_rejected(run: Any, *phrases: str, names: Path | str | None = None) -> None:
    """Exit 2 and exactly one stderr line holding every phrase (case-insensitive) and the file."""
    assert run.code == 2, (run.code, run.err)
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    line = lines[0]
    assert line.startswith("cementscan: error: "), line
    assert "Traceback" not in line
    for phrase in phrases:
        assert phrase.lower() in line.lower(), (phrase, line)
    if names is not None:
        assert str(names) in line, (names, line)


def assert_analyze_rejected(cli: Cli, inputs: Path, tmp_path: Path, *phrases: str) -> None:
    out = tmp_path / "out"
    run = cli("analyze", inputs, "--out", out)
    assert_rejected(run, *phrases)
    assert not (out / "findings.json").exists()
    assert not out.exists() or not any(out.iterdir())
    assert run.out == ""


# --- shared sources ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def portal(shared_data: Path) -> list[Dataset]:
    """Ten consecutive real slices (5 mm apart) of the portal-venous DICOM series."""
    return read_slices(shared_data / PORTAL)[20:30]


@pytest.fixture(scope="module")
def abdomen(shared_data: Path) -> nib.Nifti1Image:
    return nifti_image(shared_data / ABDOMEN / "ct.nii.gz")


def nifti(image: nib.Nifti1Image, array: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(array, image.affine), path)
    return path


def hu_of(image: nib.Nifti1Image) -> np.ndarray:
    return np.asanyarray(image.dataobj).astype(np.int16)


# --- DICOM content that is not a CT volume ----------------------------------------------------


def test_mr_series(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(
        clone(portal, Modality="MR", SOPClassUID=MR_IMAGE_STORAGE), tmp_path / "mr"
    )
    assert_rejected(cli("info", folder), "modality MR", "not CT", names=folder)
    assert_analyze_rejected(cli, folder, tmp_path, "modality MR")


def test_localizer_only(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    scout = clone(portal[:1], ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    scout[0].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal, as scouts are
    folder = write_slices(scout, tmp_path / "scout")
    assert_rejected(cli("info", folder), "localizer", names=folder)


def test_localizer_images_of_a_whole_stack(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(
        clone(portal, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]), tmp_path / "d"
    )
    assert_rejected(cli("info", folder), "localizer", names=folder)


def test_single_dicom_slice(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(portal[4:5], tmp_path / "one")
    assert_rejected(cli("info", folder), "single slice", names=folder)
    assert_analyze_rejected(cli, folder, tmp_path, "single slice")


def test_single_slice_nifti(cli: Cli, abdomen: nib.Nifti1Image, tmp_path: Path) -> None:
    path = nifti(abdomen, hu_of(abdomen)[:, :, 50:51], tmp_path / "one.nii.gz")
    assert_rejected(cli("info", path), "single slice", names=path)


def test_two_dimensional_nifti(cli: Cli, abdomen: nib.Nifti1Image, tmp_path: Path) -> None:
    path = nifti(abdomen, hu_of(abdomen)[:, :, 50], tmp_path / "flat.nii.gz")
    assert_rejected(cli("info", path), "3-D", "2 dimensions", names=path)


def test_four_dimensional_nifti(cli: Cli, abdomen: nib.Nifti1Image, tmp_path: Path) -> None:
    hu = hu_of(abdomen)
    path = nifti(abdomen, np.stack([hu, hu], axis=-1), tmp_path / "4d.nii.gz")
    assert_rejected(cli("info", path), "3-D", "4 dimensions", names=path)
    assert_analyze_rejected(cli, path, tmp_path, "4 dimensions")


# --- broken slice stacks ----------------------------------------------------------------------


def test_missing_slice_in_the_middle(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(portal[:5] + portal[6:], tmp_path / "gap")
    assert_rejected(cli("info", folder), "missing slice", str(folder))
    assert_analyze_rejected(cli, folder, tmp_path, "missing slice")


def test_two_slices_at_one_position(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    twin = clone(portal[4:5], SOPInstanceUID=generate_uid())
    folder = write_slices([*portal, *twin], tmp_path / "twin")
    assert_rejected(cli("info", folder), "same position", names=folder)


def test_unevenly_spaced_slices(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    slices = clone(portal)
    shift_position(slices[4], dz=0.4 * 5.0)  # 40% of the 5 mm spacing
    folder = write_slices(slices, tmp_path / "uneven")
    assert_rejected(cli("info", folder), "unevenly spaced", names=folder)
    assert_analyze_rejected(cli, folder, tmp_path, "unevenly spaced")


def test_small_spacing_irregularity_loads_with_a_warning(
    cli: Cli, portal: list[Dataset], tmp_path: Path
) -> None:
    slices = clone(portal)
    shift_position(slices[4], dz=0.03 * 5.0)  # 3%: tolerated, but said
    folder = write_slices(slices, tmp_path / "irregular")
    run = cli("info", folder, "--json")
    assert run.code == 0, run.err
    info = json.loads(run.out)
    assert info["shape"] == [512, 512, 10]
    assert info["spacing_mm"][2] == pytest.approx(5.0, abs=1e-3)
    assert any("slice spacing varies" in w and "3.0%" in w for w in info["warnings"]), info

    out = tmp_path / "out"
    run = cli("analyze", folder, "--out", out, "--anatomy", "none")
    assert run.code == 0, run.err
    findings = json.loads((out / "findings.json").read_text())
    assert any("slice spacing varies" in w for w in findings["warnings"]), findings["warnings"]


def test_regular_slices_give_no_spacing_warning(
    cli: Cli, portal: list[Dataset], tmp_path: Path
) -> None:
    """The control for the test above: the untouched slices load without that warning."""
    folder = write_slices(portal, tmp_path / "regular")
    run = cli("info", folder, "--json")
    assert run.code == 0, run.err
    assert not any("spacing" in w for w in json.loads(run.out)["warnings"])


def test_mixed_slice_sizes(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    slices = clone(portal)
    half = slices[5].pixel_array[::2, ::2]
    set_pixels(slices[5], half)  # 256x256 at twice the pixel size
    slices[5].PixelSpacing = [2 * float(v) for v in slices[5].PixelSpacing]
    folder = write_slices(slices, tmp_path / "mixed")
    assert_rejected(cli("info", folder), "mixed slice sizes", "256x256", names=folder)


def test_gantry_tilt(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    slices = clone(portal)
    for k, ds in enumerate(slices):  # the stack sheared by 10 degrees toward posterior
        shift_position(ds, dy=k * 5.0 * np.tan(np.radians(10.0)))
    folder = write_slices(slices, tmp_path / "tilt")
    assert_rejected(cli("info", folder), "gantry tilt", "10.0 degrees", names=folder)
    assert_analyze_rejected(cli, folder, tmp_path, "gantry tilt")


# --- values that are not Hounsfield units -----------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_voxels(cli: Cli, abdomen: nib.Nifti1Image, tmp_path: Path, bad: float) -> None:
    values = np.asanyarray(abdomen.dataobj).astype(np.float32)
    values[60, 50, 40] = bad
    values[10, 20, 30] = bad
    path = nifti(abdomen, values, tmp_path / "float.nii.gz")
    assert_rejected(cli("info", path), "2 voxels are NaN or infinite", names=path)
    assert_analyze_rejected(cli, path, tmp_path, "NaN or infinite")


def test_unsigned_nifti_without_intercept(
    cli: Cli, abdomen: nib.Nifti1Image, tmp_path: Path
) -> None:
    raw = np.clip(hu_of(abdomen).astype(np.int32) + 1024, 0, 4095).astype(np.uint16)
    path = nifti(abdomen, raw, tmp_path / "raw.nii.gz")
    assert_rejected(cli("info", path), "not Hounsfield units", "0..4095", names=path)


def test_unsigned_dicom_without_intercept(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    slices = clone(portal, RescaleIntercept=0, PixelRepresentation=0)
    for ds, source in zip(slices, portal, strict=True):
        set_pixels(ds, np.clip(source.pixel_array, 0, 4095).astype(np.uint16))
    slices[0].PixelData = np.full((512, 512), 4095, np.uint16).tobytes()
    folder = write_slices(slices, tmp_path / "raw")
    assert_rejected(cli("info", folder), "not Hounsfield units", "0..4095", names=folder)


# --- impossible geometry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spacing", "phrase"), [(0.0, "0 mm"), (500.0, "500 mm"), (0.001, "0.001 mm")]
)
def test_bad_nifti_spacing(
    cli: Cli, abdomen: nib.Nifti1Image, tmp_path: Path, spacing: float, phrase: str
) -> None:
    path = tmp_path / "ct.nii"
    affine = abdomen.affine.copy()
    if spacing:
        affine[:3, 1] *= spacing / 3.0
    nib.save(nib.Nifti1Image(hu_of(abdomen), affine), path)
    if not spacing:  # nibabel cannot write a zero voxel size: edit the header (qform as written)
        patch_nifti1(path, pixdim={2: 0.0})
    assert_rejected(cli("info", path), "spacing along j", phrase, names=path)


@pytest.mark.parametrize(
    ("pixel_mm", "phrase"), [(0.0, "0.0 mm"), (500.0, "500 mm"), (0.001, "0.001 mm")]
)
def test_bad_dicom_pixel_spacing(
    cli: Cli, portal: list[Dataset], tmp_path: Path, pixel_mm: float, phrase: str
) -> None:
    folder = write_slices(clone(portal, PixelSpacing=[pixel_mm, pixel_mm]), tmp_path / "d")
    assert_rejected(cli("info", folder), "spacing along i", phrase, str(folder))


# --- damaged files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_truncated_nifti(cli: Cli, shared_data: Path, tmp_path: Path, name: str) -> None:
    source = shared_data / ABDOMEN / "ct.nii.gz"
    whole = tmp_path / f"whole-{name}"
    if name.endswith(".gz"):
        shutil.copy(source, whole)
    else:
        nib.save(nifti_image(source), whole)
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    assert_rejected(cli("info", path), "truncated", names=path)
    assert_analyze_rejected(cli, path, tmp_path, "truncated")
    assert cli("info", whole).code == 0  # the control: the whole file loads


def test_truncated_dicom_pixel_data(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(portal, tmp_path / "d")
    damaged = sorted(folder.iterdir())[6]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) - 200_000])
    assert_rejected(cli("info", folder), "pixel data", names=damaged)
    assert_analyze_rejected(cli, folder, tmp_path, "pixel data")


@pytest.mark.parametrize(("slice_index", "keep_bytes"), [(0, 600), (9, 600), (4, 1500)])
def test_dicom_cut_inside_its_header(
    cli: Cli, portal: list[Dataset], tmp_path: Path, slice_index: int, keep_bytes: int
) -> None:
    """A header cut short must not make its slice silently vanish (first, last or middle).

    pydicom reads a header cut after 600 bytes without an error (just fewer attributes); cut
    after 1500 bytes it raises."""
    folder = write_slices(portal, tmp_path / "d")
    damaged = sorted(folder.iterdir())[slice_index]
    damaged.write_bytes(damaged.read_bytes()[:keep_bytes])
    assert_rejected(cli("info", folder), "corrupt", "DICOM header", names=damaged)


def test_dicom_with_garbled_position(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(portal, tmp_path / "d")
    damaged = sorted(folder.iterdir())[3]
    data = bytearray(damaged.read_bytes())
    tag = data.index(b"\x20\x00\x32\x00DS")  # (0020,0032) ImagePositionPatient, explicit VR
    length = int.from_bytes(data[tag + 6 : tag + 8], "little")
    data[tag + 8 : tag + 8 + length] = b"\x00garbled" + b"\x17" * (length - 8)
    damaged.write_bytes(bytes(data))
    assert_rejected(
        cli("info", folder), "corrupt DICOM header", "ImagePositionPatient", names=damaged
    )


# --- paths ------------------------------------------------------------------------------------


def test_nonexistent_path(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "no-such-scan.nii.gz"
    assert_rejected(cli("info", path), "no such file", names=path)
    assert_analyze_rejected(cli, path, tmp_path, "no such file")


def test_broken_symlink(cli: Cli, tmp_path: Path) -> None:
    link = tmp_path / "ct.nii.gz"
    link.symlink_to(tmp_path / "moved-away.nii.gz")
    assert_rejected(cli("info", link), "no such file", names=link)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(cli: Cli, shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    shutil.copy(shared_data / ABDOMEN / "ct.nii.gz", path)
    path.chmod(0)
    try:
        assert_rejected(cli("info", path), "permission denied", names=path)
    finally:
        path.chmod(0o600)


def test_empty_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    path.touch()
    assert_rejected(cli("info", path), "empty file", names=path)


def test_file_of_an_unknown_type(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "scan.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a volume")
    assert_rejected(cli("info", path), "not a CT volume file", names=path)


def test_empty_folder(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    assert_rejected(cli("info", folder), "no DICOM files", names=folder)
    assert_analyze_rejected(cli, folder, tmp_path, "no DICOM files")


def test_folder_without_dicom(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.txt").write_text("scan exported elsewhere\n")
    (folder / "sub" / "list.csv").write_text("a,b\n1,2\n")
    assert_rejected(cli("info", folder), "no DICOM files", names=folder)


# --- several patients -------------------------------------------------------------------------


def test_two_patients_in_one_folder(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = tmp_path / "two"
    write_slices(portal, folder / "a")
    write_slices(
        clone(portal, True, PatientID="OTHER-PATIENT", PatientName="Other^Patient"), folder / "b"
    )
    run = cli("info", folder)
    assert_rejected(run, "2 different patients", "OTHER-PATIENT", names=folder)
    assert_analyze_rejected(cli, folder, tmp_path, "different patients")


def test_same_series_copied_under_another_patient_id(
    cli: Cli, portal: list[Dataset], tmp_path: Path
) -> None:
    folder = tmp_path / "two"
    write_slices(portal, folder / "a")
    write_slices(clone(portal, PatientID="OTHER-PATIENT"), folder / "b")
    assert_rejected(cli("info", folder), "different patients", names=folder)


def test_two_inputs_of_different_patients(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    first = write_slices(portal, tmp_path / "a")
    second = write_slices(clone(portal, True, PatientID="OTHER-PATIENT"), tmp_path / "b")
    assert_rejected(cli("info", first, second), "2 different patients")


# --- usage ------------------------------------------------------------------------------------


def test_unknown_series_uid(cli: Cli, portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(portal, tmp_path / "d")
    assert_rejected(
        cli("info", folder, "--series", "1.2.3.4"), "--series 1.2.3.4", "not in the input"
    )


# --- a real process: nothing but one line on stderr -------------------------------------------


def _run_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cementscan.cli.main", *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k != "CEMENTSCAN_DEBUG"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_process_prints_one_line_and_no_traceback(portal: list[Dataset], tmp_path: Path) -> None:
    folder = write_slices(portal, tmp_path / "d")
    damaged = sorted(folder.iterdir())[5]
    data = bytearray(damaged.read_bytes())
    tag = data.index(b"\x08\x00\x16\x00UI", 200)  # (0008,0016) SOPClassUID in the dataset
    data[tag + 6 : tag + 8] = (0xFFF0).to_bytes(2, "little")  # a length that swallows the rest
    damaged.write_bytes(bytes(data))  # pydicom warns on every value it then misreads
    runs = [
        ("info", tmp_path / "missing.nii.gz"),
        ("info", folder),
        ("analyze", folder, "--out", tmp_path / "out"),
    ]
    for args in runs:
        result = _run_process(*args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "Warning" not in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("cementscan: error: "), result.stderr
        assert result.stdout == ""
    assert "corrupt" in result.stderr and str(damaged) in result.stderr
    assert not (tmp_path / "out").exists()
