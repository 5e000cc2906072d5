"""Choosing which CT series of a study to analyse: one reconstruction per body region (DESIGN.md §2)."""

from __future__ import annotations

import re

from cementscan.errors import InputError
from cementscan.io.dicom import DicomSeries
from cementscan.io.volume import SkippedSeries

# Two series covering at least this fraction of the shorter one's z-extent show the same region.
SAME_REGION_OVERLAP = 0.5
_SHARP_WORDS = ("BONE", "LUNG", "SHARP", "EDGE", "DETAIL", "HIGH", "ULTRA")
_SIEMENS_KERNEL = re.compile(r"^[A-Z]{1,2}(\d{2})")  # B30f, Br40d, I70f, Hr64


def is_sharp_kernel(kernel: str | None) -> bool:
    """True for bone/lung (high-frequency) reconstruction kernels, False for soft-tissue or unknown."""
    if not kernel:
        return False
    text = kernel.upper()
    if any(word in text for word in _SHARP_WORDS):
        return True
    match = _SIEMENS_KERNEL.match(text)
    return bool(match and int(match.group(1)) >= 50)


def _thickness_rank(series: DicomSeries) -> int:
    """1-3 mm slices first, then sub-millimetre, then thick slices."""
    thickness = series.slice_thickness_mm()
    if thickness is None:
        return 1
    if 1.0 <= thickness <= 3.0:
        return 0
    return 1 if thickness < 1.0 else 2


def _describe(series: DicomSeries) -> str:
    kernel = series.first.get("ConvolutionKernel")
    thickness = series.slice_thickness_mm()
    parts = [f"series {series.first.get('SeriesNumber', '?')}"]
    if kernel:
        parts.append(f"kernel {kernel}")
    if thickness:
        parts.append(f"{thickness:g} mm")
    return ", ".join(parts)


def choose_series(
    found: list[DicomSeries], series_uid: str | None = None
) -> tuple[list[DicomSeries], list[SkippedSeries]]:
    """Split the series of a folder into those to analyse and those skipped (with reasons).

    Without ``series_uid``: every non-CT series and localizer is skipped; among the CT series,
    per region the best reconstruction is kept (axial, soft-tissue kernel, 1-3 mm slices, most
    coverage) and the others covering the same region are skipped as duplicates.
    """
    skipped: list[SkippedSeries] = []
    if series_uid is not None:
        chosen = [s for s in found if s.series_uid == series_uid]
        if not chosen:
            available = ", ".join(s.series_uid for s in found)
            raise InputError(f"--series {series_uid} is not in the input (found: {available})")
        for s in found:
            if s is not chosen[0]:
                skipped.append(SkippedSeries(s.series_uid, "not the series named by --series"))
        _require_ct(chosen)
        return chosen, skipped

    candidates: list[DicomSeries] = []
    for s in found:
        if s.modality != "CT":
            skipped.append(
                SkippedSeries(s.series_uid, f"modality {s.modality or 'unknown'}, not CT")
            )
        elif s.is_localizer:
            skipped.append(SkippedSeries(s.series_uid, "localizer (scout) or single slice"))
        else:
            candidates.append(s)
    if not candidates:
        _require_ct(found)
        raise InputError(
            "only localizer (scout) images or single slices, no CT volume", found[0].headers[0][0]
        )

    candidates.sort(
        key=lambda s: (
            not s.is_axial,
            is_sharp_kernel(s.kernel()),
            _thickness_rank(s),
            -(s.z_range_mm()[1] - s.z_range_mm()[0]),
        )
    )
    chosen = []
    for s in candidates:
        twin = next((c for c in chosen if _same_region(c, s)), None)
        if twin is None:
            chosen.append(s)
        else:
            skipped.append(
                SkippedSeries(
                    s.series_uid,
                    f"another reconstruction of the region of {twin.series_uid} "
                    f"({_describe(s)}; chosen: {_describe(twin)})",
                )
            )
    # Analyse in the order the folder lists them (series number), not in preference order.
    order = {id(s): n for n, s in enumerate(found)}
    chosen.sort(key=lambda s: order[id(s)])
    return chosen, skipped


def _require_ct(series: list[DicomSeries]) -> None:
    for s in series:
        if s.modality != "CT":
            raise InputError(
                f"modality {s.modality or 'unknown'}, not CT: cementscan reads CT only",
                s.headers[0][0],
            )


def _same_region(a: DicomSeries, b: DicomSeries) -> bool:
    a0, a1 = a.z_range_mm()
    b0, b1 = b.z_range_mm()
    overlap = min(a1, b1) - max(a0, b0)
    shorter = max(min(a1 - a0, b1 - b0), 1e-6)
    return overlap / shorter >= SAME_REGION_OVERLAP
