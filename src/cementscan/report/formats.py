"""Which output formats an analysis writes (``--formats``) and writing the report ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cementscan.errors import InputError
from cementscan.io.volume import CTVolume

FORMATS = ("json", "labels", "html", "pdf", "fhir", "dicom")
# DESIGN.md §2: findings.json, cement labels, report.html and FHIR always; DICOM SEG + SR + SC
# when the input was DICOM (written only for DICOM series); PDF on request.
DEFAULT_FORMATS = ("json", "labels", "html", "fhir", "dicom")
ALWAYS = ("json", "labels")  # the analysis itself: other formats are views of it


def parse_formats(text: str | None) -> tuple[str, ...]:
    """``None`` -> the defaults; ``"+pdf"`` -> defaults plus PDF; ``"html,fhir"`` -> exactly those
    (findings.json and the label maps are always written)."""
    if not text:
        return DEFAULT_FORMATS
    chosen = list(DEFAULT_FORMATS) if text.startswith("+") else list(ALWAYS)
    for word in text.lstrip("+").split(","):
        name = word.strip().lstrip("+").lower()
        if not name:
            continue
        if name not in FORMATS:
            raise InputError(f"unknown format {name!r} in --formats (known: {', '.join(FORMATS)})")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def write_formats(
    out_dir: Path,
    findings: dict[str, Any],
    label_maps: Sequence[np.ndarray],
    volumes: Sequence[CTVolume],
    formats: Sequence[str],
    *,
    show_identifiers: bool = False,
) -> list[Path]:
    """Write the report formats chosen (HTML/PDF, key images as DICOM SC, SEG, SR, FHIR)."""
    written: list[Path] = []
    key_rgb: list[np.ndarray] = []
    if "html" in formats or "pdf" in formats:
        from cementscan.report.html import write_report_formats

        paths, images = write_report_formats(
            out_dir,
            findings,
            list(label_maps),
            list(volumes),
            pdf="pdf" in formats,
            show_identifiers=show_identifiers,
        )
        written += paths
        key_rgb = [image.rgb for image in images]
    if "fhir" in formats or "dicom" in formats:
        from cementscan.report.hospital import write_hospital_formats

        written += write_hospital_formats(
            out_dir,
            findings,
            list(label_maps),
            list(volumes),
            key_rgb or None,
            dicom="dicom" in formats,
            fhir="fhir" in formats,
        )
    return written
