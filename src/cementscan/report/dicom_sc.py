"""Key images as DICOM Secondary Capture instances: a new series in the source's study."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from cementscan.atomic import atomic_path
from cementscan.report.dicom_seg import MANUFACTURER, fill_blank_uids

SC_SERIES_NUMBER = 9903


def _rgb(image: np.ndarray | str | Path) -> np.ndarray:
    """An (rows, cols, 3) uint8 array from an array or a PNG file."""
    if isinstance(image, str | Path):
        from PIL import Image  # only needed when PNG files are handed in

        with Image.open(image) as img:
            image = np.asarray(img.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(
            f"key image must be RGB uint8 (rows, cols, 3), got {array.shape} {array.dtype}"
        )
    return np.ascontiguousarray(array[:, :, :3])


def write_sc(
    images: Sequence[np.ndarray | str | Path],
    source_dataset: Dataset,
    out_dir: str | Path,
) -> list[Path]:
    """Write each key image as ``key_image_<n>.dcm`` in ``out_dir``; returns the paths."""
    source = fill_blank_uids([source_dataset])[0]
    out = Path(out_dir)
    series_uid = hd.UID()
    written: list[Path] = []
    for number, image in enumerate(images, start=1):
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=_rgb(image),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            # Key images are renderings (overlays, projections), not planes with geometry.
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid,
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=("L", "P"),
            series_description="cementscan key images (research use)",
        )
        # dciodvfy wants the type 2C Laterality present; a torso image has none, so empty.
        sc.Laterality = ""
        target = out / f"key_image_{number:02d}.dcm"
        with atomic_path(target) as tmp:
            sc.save_as(tmp)
        written.append(target)
    return written
