"""The single entry point ``analyze(inputs, options) -> Result`` and writing its outputs (DESIGN.md §1)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cementscan import __version__
from cementscan.anatomy import Anatomy, compute_anatomy
from cementscan.atomic import output_folder, staged_folder
from cementscan.cement import find_cement
from cementscan.classify import classify_candidates
from cementscan.clinical import suggest_management
from cementscan.errors import InputError
from cementscan.findings import (
    AnatomyRecord,
    Finding,
    FindingsDocument,
    InputRecord,
    SkippedRecord,
    write_findings,
)
from cementscan.io import CTVolume, Study, load_study, write_labels
from cementscan.report import DEFAULT_FORMATS, write_formats
from cementscan.summary import SeriesCoverage, series_coverage, summarise

ANATOMY_MODES = ("classical", "none")


@dataclass(frozen=True)
class AnalysisOptions:
    """What the user chose; see ``cementscan analyze --help``.

    ``symptoms`` is None when unknown and an empty tuple for an asymptomatic patient.
    """

    series_uid: str | None = None
    anatomy: str = "classical"  # "classical" | "none" | TotalSegmentator masks (folder or file)
    symptoms: tuple[str, ...] | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS


@dataclass(frozen=True, eq=False)
class Result:
    """What ``analyze`` returns: the study read, the findings document and one label map per series."""

    study: Study
    document: FindingsDocument
    label_maps: tuple[np.ndarray, ...] = field(default=())


def analyze(inputs: Sequence[str | Path], options: AnalysisOptions | None = None) -> Result:
    """Analyse one patient's study (one or more CT series) and return its findings.

    >>> result = analyze(["ct.nii.gz"], AnalysisOptions(anatomy="none"))  # doctest: +SKIP
    >>> result.document.summary.leak_present  # doctest: +SKIP
    False
    """
    options = options or AnalysisOptions()
    if options.anatomy not in ANATOMY_MODES and not Path(options.anatomy).exists():
        raise InputError(
            f"--anatomy must be {' or '.join(ANATOMY_MODES)}, or TotalSegmentator masks "
            "(a folder of per-class files or a multilabel file)",
            options.anatomy,
        )
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    study = load_study(inputs, series_uid=options.series_uid)
    timings["load"] = time.perf_counter() - clock
    masks_path = None if options.anatomy in ANATOMY_MODES else Path(options.anatomy)
    if masks_path is not None and len(study.volumes) != 1:
        raise InputError(
            f"--anatomy with a masks folder needs exactly one CT series, the input has "
            f"{len(study.volumes)}",
            masks_path,
        )

    findings: list[Finding] = []
    label_maps: list[np.ndarray] = []
    anatomies: list[Anatomy | None] = []
    coverages: list[SeriesCoverage] = []
    stage_warnings: list[str] = []
    anatomy_s = cement_s = classify_s = 0.0
    for series_index, volume in enumerate(study.volumes):
        clock = time.perf_counter()
        anatomy = None
        if options.anatomy != "none":
            anatomy = compute_anatomy(volume, masks_path=masks_path)
        anatomies.append(anatomy)
        anatomy_s += time.perf_counter() - clock
        clock = time.perf_counter()
        candidates = find_cement(volume, anatomy)
        cement_s += time.perf_counter() - clock
        clock = time.perf_counter()
        # Finding ids run across the study; each series' label map holds its findings' ids.
        series_findings, labels = classify_candidates(
            candidates, volume, anatomy, series_index, len(findings) + 1, stage_warnings
        )
        coverages.append(series_coverage(series_index, volume, anatomy))
        classify_s += time.perf_counter() - clock
        label_maps.append(labels)
        findings.extend(series_findings)
    timings["anatomy"] = anatomy_s
    timings["cement"] = cement_s
    timings["classify"] = classify_s

    clock = time.perf_counter()
    summary = summarise(findings, coverages)
    timings["summary"] = time.perf_counter() - clock

    warnings = [w for v in study.volumes for w in v.warnings]
    warnings.extend(w for a in anatomies if a is not None for w in a.warnings)
    if options.anatomy == "none":
        warnings.append(
            "anatomy was switched off (--anatomy none): categories are position priors, levels "
            "are null, sides are taken against the bone column's midline"
        )
    warnings.extend(stage_warnings)
    document = FindingsDocument(
        software={"name": "cementscan", "version": __version__},
        inputs=tuple(_input_record(v, a) for v, a in zip(study.volumes, anatomies, strict=True)),
        skipped_series=tuple(SkippedRecord(s.series_uid, s.reason) for s in study.skipped),
        anatomy=_anatomy_record(anatomies),
        findings=tuple(findings),
        summary=summary,
        management=suggest_management(summary, options.symptoms),
        warnings=tuple(warnings),
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
    return Result(study=study, document=document, label_maps=tuple(label_maps))


def _anatomy_record(anatomies: Sequence[Anatomy | None]) -> AnatomyRecord:
    """The study's levels (cranial to caudal, every series) and the most confident series' anchor."""
    found = [a for a in anatomies if a is not None]
    if not found:
        return AnatomyRecord()
    best = max(found, key=lambda a: a.level_confidence)
    levels: dict[str, float] = {}
    for anatomy in found:
        for vertebra in anatomy.vertebrae:
            if vertebra.level:
                levels.setdefault(vertebra.level, vertebra.body_centroid_lps_mm[2])
    return AnatomyRecord(
        levels=tuple(sorted(levels, key=lambda level: -levels[level])),
        level_anchor=best.level_anchor,
        level_confidence=round(best.level_confidence, 3),
    )


def _input_record(volume: CTVolume, anatomy: Anatomy | None) -> InputRecord:
    return InputRecord(
        path=volume.source.path,
        format=volume.source.format,
        series_uid=volume.source.series_uid,
        shape=volume.shape,
        spacing_mm=volume.spacing_mm,
        modality="CT",
        contrast_phase="unknown" if anatomy is None else anatomy.contrast_phase,
        coverage=() if anatomy is None else anatomy.coverage,
        orientation=volume.orientation_code(),
        slice_thickness_mm=volume.source.slice_thickness_mm,
    )


def label_file_names(count: int) -> list[str]:
    """DESIGN.md §3: cement_labels.nii.gz for one series, cement_labels_<n>.nii.gz for several."""
    if count == 1:
        return ["cement_labels.nii.gz"]
    return [f"cement_labels_{n}.nii.gz" for n in range(count)]


def write_outputs(
    result: Result,
    out_dir: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    show_identifiers: bool = False,
) -> list[Path]:
    """Write findings.json, the cement label maps and the report formats into ``out_dir``.

    Everything is written into a staging folder inside ``out_dir`` and renamed into place only
    when all of it was written; an input file is never overwritten.
    """
    out = output_folder(out_dir)
    label_names = label_file_names(len(result.label_maps))
    inputs = {Path(v.source.path).resolve() for v in result.study.volumes}
    for name in ["findings.json", *label_names]:
        if (out / name).resolve() in inputs:
            raise InputError(f"writing {name} would overwrite an input; choose another --out", out)

    written: list[Path] = []
    with staged_folder(out, written) as staging:
        for name, labels, volume in zip(
            label_names, result.label_maps, result.study.volumes, strict=True
        ):
            write_labels(labels, volume, staging / name)
        clock = time.perf_counter()
        write_formats(
            staging,
            result.document.to_dict(),
            result.label_maps,
            result.study.volumes,
            formats,
            show_identifiers=show_identifiers,
        )
        timings = {**result.document.timings_s, "report": round(time.perf_counter() - clock, 3)}
        write_findings(replace(result.document, timings_s=timings), staging / "findings.json")
    return written
