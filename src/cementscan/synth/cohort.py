"""A synthetic cohort for batch runs: many small phantoms with known truth, patients, bad inputs."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from pydicom.uid import generate_uid

from cementscan.atomic import atomic_path
from cementscan.io.dicom_write import write_dicom_series
from cementscan.io.volume import CTVolume, SourceInfo
from cementscan.io.write import write_volume
from cementscan.synth.phantom import make_phantom
from cementscan.synth.presets import preset_spec

TRUTH_FILE = "cohort_truth.json"
COHORT_TRUTH_SCHEMA = "cementscan.cohort-truth/1"
# Every preset the batch should see, in the order studies cycle through them.
DEFAULT_MIX = ("negative", "reference-case", "thoracic-azygos", "canal-leak", "right-heart")
MULTI_SERIES_PRESETS = ("reference-case",)  # several files as NIfTI: DICOM keeps them one study
VOLUME_SUFFIXES = (".nii.gz", ".nrrd", ".mha")


@dataclass(frozen=True)
class _Planned:
    index: int
    preset: str
    seed: int
    dicom: bool
    patient: str
    patient_id: str
    study_number: int


def make_cohort(
    root: str | Path,
    n_studies: int,
    seed: int = 0,
    *,
    presets: tuple[str, ...] = DEFAULT_MIX,
    pixel_mm: float = 4.0,
    slice_mm: float = 5.0,
    dicom_fraction: float = 0.5,
    max_studies_per_patient: int = 3,
    bad_inputs: bool = True,
) -> dict[str, Any]:
    """Write ``n_studies`` phantoms under ``root`` and ROOT/cohort_truth.json; return the truth.

    Studies cycle through ``presets`` (phantoms of ``pixel_mm`` x ``slice_mm``: 4 x 5 mm takes a
    few seconds to analyse). DICOM studies (ROOT/patient_NNN/study_NN/) belong to
    patients with a PatientID, some with several studies (a folder per series when a study has
    several); volume files (ROOT/volumes/, NIfTI,
    NRRD, MetaImage) carry no PatientID, so each is its own patient. ``bad_inputs`` adds a
    truncated NIfTI and a 2-D image (both analysed and refused: input_error), an MR series and
    a README (both skipped by discovery). The truth lists each study's expected batch key,
    patient, expected status and expected summary (the phantom's truth.json summary).
    """
    if n_studies < 1:
        raise ValueError("a cohort needs at least one study")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    studies = []
    for plan in _plan(n_studies, seed, presets, dicom_fraction, max_studies_per_patient, rng):
        studies.append(_write_study(root, plan, pixel_mm, slice_mm))
    skipped: list[str] = [TRUTH_FILE]
    if bad_inputs:
        studies += _write_bad_inputs(root)
        skipped += _write_skipped_inputs(root)
    truth = {
        "schema": COHORT_TRUTH_SCHEMA,
        "seed": seed,
        "pixel_mm": pixel_mm,
        "slice_mm": slice_mm,
        "studies": studies,
        "skipped": sorted(skipped),
    }
    with atomic_path(root / TRUTH_FILE) as tmp:
        tmp.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth


def _plan(
    n_studies: int,
    seed: int,
    presets: tuple[str, ...],
    dicom_fraction: float,
    max_per_patient: int,
    rng: np.random.Generator,
) -> list[_Planned]:
    """Presets in turn; DICOM or not at random (multi-series presets always DICOM); DICOM
    studies handed out to patients of 1..max studies, the first patient with at least two."""
    chosen = [presets[n % len(presets)] for n in range(n_studies)]
    dicom = [p in MULTI_SERIES_PRESETS or bool(rng.random() < dicom_fraction) for p in chosen]
    planned: list[_Planned] = []
    patient_no, left, study_no = 0, 0, 0
    volume_no = 0
    for n, (preset, is_dicom) in enumerate(zip(chosen, dicom, strict=True)):
        if is_dicom:
            if left == 0:
                patient_no += 1
                low = 2 if patient_no == 1 and sum(dicom) >= 2 else 1
                left = int(rng.integers(low, max(low, max_per_patient) + 1))
                study_no = 0
            left -= 1
            study_no += 1
            patient = f"patient_{patient_no:03d}"
            planned.append(
                _Planned(n, preset, seed * 1000 + n, True, patient, f"SYN{seed}-{patient_no:03d}",
                         study_no)
            )  # fmt: skip
        else:
            volume_no += 1
            planned.append(
                _Planned(n, preset, seed * 1000 + n, False, "", "", volume_no)
            )  # fmt: skip
    return planned


def _write_study(root: Path, plan: _Planned, pixel_mm: float, slice_mm: float) -> dict[str, Any]:
    spec = preset_spec(plan.preset, seed=plan.seed, slice_mm=slice_mm, pixel_mm=pixel_mm)
    phantom = make_phantom(spec)
    if plan.dicom:
        key = f"{plan.patient}/study_{plan.study_number:02d}"
        study_uid = _uid("study", plan.seed)
        for_uid = _uid("for", plan.seed)
        multi = len(phantom.series) > 1
        for n, series in enumerate(phantom.series):
            source = series.ct.source
            write_dicom_series(
                series.ct,
                root / key / f"series_{n + 1:02d}" if multi else root / key,
                patient_id=plan.patient_id,
                patient_name=f"SYNTHETIC^{plan.patient.upper()}",
                study_uid=study_uid,
                series_uid=_uid("series", plan.seed, n),
                frame_of_reference_uid=for_uid,
                series_number=n + 1,
                series_description=series.description,
                convolution_kernel=source.convolution_kernel or "B30f",
                slice_thickness_mm=source.slice_thickness_mm,
                contrast_agent=source.contrast_agent,
                study_date=f"2025{plan.study_number:02d}15",
            )
    else:
        suffix = VOLUME_SUFFIXES[(plan.study_number - 1) % len(VOLUME_SUFFIXES)]
        key = f"volumes/study_{plan.index:03d}{suffix}"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        write_volume(phantom.series[0].ct, root / key)
    return {
        "key": key,
        "patient": plan.patient or f"volume:{key}",
        "patient_id": plan.patient_id,
        "preset": plan.preset,
        "seed": plan.seed,
        "format": "dicom" if plan.dicom else "volume",
        "series": len(phantom.series),
        "expected_status": "ok",
        "summary": json.loads(json.dumps(phantom.summary)),
    }


def _uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=["cementscan-cohort", *map(str, parts)]))


def _write_bad_inputs(root: Path) -> list[dict[str, Any]]:
    """A truncated NIfTI (a transfer cut short) and a 2-D image (not a CT volume)."""
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetImageFromArray(np.full((16, 32, 32), -1000, dtype=np.int16))
    sitk.WriteImage(volume, str(bad / "truncated.nii.gz"))
    data = (bad / "truncated.nii.gz").read_bytes()
    raw = gzip.decompress(data)
    (bad / "truncated.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    radiograph = sitk.GetImageFromArray(np.zeros((64, 64), dtype=np.int16))
    sitk.WriteImage(radiograph, str(bad / "radiograph.nii.gz"))
    return [
        {"key": f"bad/{name}", "patient": f"volume:bad/{name}", "patient_id": "", "preset": None,
         "seed": None, "format": "volume", "series": 0, "expected_status": "input_error",
         "summary": None}
        for name in ("radiograph.nii.gz", "truncated.nii.gz")
    ]  # fmt: skip


def _write_skipped_inputs(root: Path) -> list[str]:
    """A README and an MR series: not studies to analyse, listed as skipped."""
    (root / "README.txt").write_text("Synthetic cohort written by cementscan.synth.cohort.\n")
    mr = CTVolume(
        hu=np.zeros((24, 24, 6), dtype=np.int16),
        spacing_mm=(8.0, 8.0, 8.0),
        origin_lps_mm=(0.0, 0.0, 0.0),
        direction=np.eye(3),
        source=SourceInfo(path="", format="dicom", modality="MR"),
    )
    write_dicom_series(
        mr,
        root / "patient_mr" / "study_01",
        patient_id="SYN-MR",
        patient_name="SYNTHETIC^MR",
        study_uid=_uid("mr-study"),
        series_uid=_uid("mr-series"),
        frame_of_reference_uid=_uid("mr-for"),
        series_number=1,
        series_description="MR T1 spine",
        modality="MR",
    )
    return ["README.txt", "patient_mr/study_01"]
