"""write_dicom_series: the series read back by SimpleITK has the volume's geometry and HU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from cementscan.io.dicom_write import write_dicom_series
from cementscan.io.volume import CTVolume, SourceInfo


def _volume(direction: np.ndarray, shape: tuple[int, int, int] = (24, 20, 7)) -> CTVolume:
    rng = np.random.default_rng(3)
    hu = rng.integers(-1024, 3071, size=shape).astype(np.int16)
    hu[0, 0, :] = -1024
    hu[1, 0, :] = 3071
    return CTVolume(
        hu, (0.7, 0.9, 2.5), (-12.5, 30.25, -100.0), direction, SourceInfo(path="", format="nifti")
    )


def _write(vol: CTVolume, out: Path, **kwargs: object) -> list[Path]:
    args: dict[str, object] = dict(
        patient_id="P1", patient_name="TEST^ONE", study_uid="1.2.3.4", series_uid="1.2.3.4.5",
        frame_of_reference_uid="1.2.3.4.6", series_number=3, series_description="test series",
    )  # fmt: skip
    args.update(kwargs)
    return write_dicom_series(vol, out, **args)  # type: ignore[arg-type]


def _read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader_GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),
        np.diag([-1.0, -1.0, 1.0]),
        np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
    ],
    ids=["LPS", "RAS", "PIR"],
)
@pytest.mark.parametrize("signed", [False, True])
def test_round_trip_geometry_and_hu(tmp_path: Path, direction: np.ndarray, signed: bool) -> None:
    vol = _volume(direction)
    files = _write(vol, tmp_path, signed=signed)
    assert len(files) == vol.shape[2]
    image = _read(tmp_path)
    assert image.GetSize() == vol.shape
    np.testing.assert_allclose(image.GetSpacing(), vol.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), vol.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), direction, atol=1e-6)
    hu = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    np.testing.assert_array_equal(hu, vol.hu)


def test_header_fields(tmp_path: Path) -> None:
    vol = _volume(np.eye(3))
    files = _write(
        vol, tmp_path, contrast_agent="IODINE", convolution_kernel="B70f", slice_thickness_mm=3.0
    )
    ds = pydicom.dcmread(files[2])
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.Modality == "CT" and ds.KVP == 120.0 and ds.ContrastBolusAgent == "IODINE"
    assert float(ds.RescaleIntercept) == -1024.0 and float(ds.RescaleSlope) == 1.0
    assert [float(v) for v in ds.PixelSpacing] == [
        0.9,
        0.7,
    ]  # [row spacing (j), column spacing (i)]
    assert ds.Rows == vol.shape[1] and ds.Columns == vol.shape[0]
    assert float(ds.SliceThickness) == 3.0 and ds.ConvolutionKernel == "B70f"
    np.testing.assert_allclose(
        [float(v) for v in ds.ImagePositionPatient], vol.index_to_lps([0, 0, 2])
    )
    assert len({pydicom.dcmread(f).SOPInstanceUID for f in files}) == len(files)


def test_overrides_for_bad_input_tests(tmp_path: Path) -> None:
    vol = _volume(np.eye(3), shape=(8, 8, 3))
    files = _write(
        vol, tmp_path, modality="MR", extra_tags={"SliceThickness": None, "PatientSex": "M"}
    )
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "MR" and ds.PatientSex == "M" and "SliceThickness" not in ds


def test_refuses_a_third_axis_that_is_not_the_slice_normal(tmp_path: Path) -> None:
    vol = _volume(np.diag([1.0, 1.0, -1.0]))  # LPI: left-handed, k opposite to i x j
    with pytest.raises(ValueError, match="slice normal"):
        _write(vol, tmp_path)
