"""The one way into cementscan: paths given by the user -> a checked Study of CTVolumes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cementscan.errors import InputError
from cementscan.io.dicom import read_series, scan_folder
from cementscan.io.image import image_format, load_image_file
from cementscan.io.series import choose_series
from cementscan.io.volume import CTVolume, SkippedSeries, Study


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file or folder", path)
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise InputError("permission denied (not readable)", path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputError("empty file", path)


def load_study(inputs: Sequence[str | Path], series_uid: str | None = None) -> Study:
    """Load every CT series that the inputs hold, as one patient's study.

    Each input is a NIfTI/NRRD/MetaImage file or a folder searched recursively for DICOM.
    Raises InputError (exit code 2) for anything that cannot be read as CT.
    """
    if not inputs:
        raise InputError("no input given")
    volumes: list[CTVolume] = []
    skipped: list[SkippedSeries] = []
    for raw in inputs:
        path = Path(raw)
        _check_path(path)
        if path.is_dir():
            found = scan_folder(path)
            chosen, skipped_here = choose_series(found, series_uid)
            skipped.extend(SkippedSeries(s.series_uid, s.reason, str(path)) for s in skipped_here)
            volumes.extend(read_series(s, path) for s in chosen)
        elif image_format(path) is not None:
            volumes.append(load_image_file(path))
        else:
            raise InputError(
                "not a CT volume file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd) or DICOM folder",
                path,
            )
    _check_one_patient(volumes)
    return Study(volumes=tuple(volumes), skipped=tuple(skipped))


def load_volume(path: str | Path) -> CTVolume:
    """Load one input that must hold exactly one CT series."""
    study = load_study([path])
    if len(study.volumes) != 1:
        raise InputError(f"expected one CT series, found {len(study.volumes)}", path)
    return study.volumes[0]


def _check_one_patient(volumes: list[CTVolume]) -> None:
    ids = {v.source.patient_id for v in volumes if v.source.patient_id}
    if len(ids) > 1:
        raise InputError(
            f"inputs belong to {len(ids)} different patients ({', '.join(sorted(ids))}); "
            "one analysis is one patient's study"
        )
