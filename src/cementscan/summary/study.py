"""The per-study summary of DESIGN.md §4, from the findings of every analysed series."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cementscan.anatomy.heart import RIGHT_ATRIUM, contrast_hidden_regions
from cementscan.anatomy.model import Anatomy, Vertebra
from cementscan.classify.placement import levels_known
from cementscan.findings.model import (
    Finding,
    IvcSummary,
    PceSummary,
    RegionSummary,
    Summary,
    TreatedLevel,
)
from cementscan.findings.vocabulary import CATEGORIES, VERTEBRAL_LEVELS
from cementscan.io.volume import CTVolume

# Counted in summary.leaks: every extra-osseous site except the right heart and the pulmonary
# arteries, which have their own blocks (the phantoms' truth counts the same way).
LEAK_SUMMARY_CATEGORIES = tuple(
    c for c in CATEGORIES if c not in ("intravertebral", "right_heart", "pulmonary_artery")
)
IVC_REGIONS = ("abdomen", "lumbar_spine")
CHEST_REGIONS = ("chest",)
DEDUPE_MARGIN_MM = 3.0  # two series' voxels of one object differ by up to a slice's half-width
FOV_EDGE_MARGIN_MM = 1.0  # a cast whose top is this close to a scan's top edge may go on beyond
PREDOMINANCE_RATIO = 2.0  # DESIGN.md §4: predominance is at least 2:1 by count


@dataclass(frozen=True)
class SeriesCoverage:
    """What the summary must know of one analysed series: what it covered and could assess."""

    series_index: int
    coverage: tuple[str, ...]  # body regions (InputRecord.coverage); () when unknown
    z_range_mm: tuple[float, float]  # LPS z of the scan's caudal and cranial edges
    slice_mm: float
    frame_of_reference_uid: str | None = None
    dense_contrast_veins: tuple[str, ...] = ()  # and RIGHT_ATRIUM: regions contrast hides
    vertebrae: tuple[Vertebra, ...] = ()  # only when the levels are known


def series_coverage(series_index: int, volume: CTVolume, anatomy: Anatomy | None) -> SeriesCoverage:
    """The SeriesCoverage of one series from its volume and (optional) anatomy."""
    corners = np.array(
        [[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)], float
    )
    corners = (corners + 0.5) * np.asarray(volume.shape, float) - 0.5
    z = volume.index_to_lps(corners)[:, 2]
    step_z = np.abs(volume.direction[2, :] * np.asarray(volume.spacing_mm))
    return SeriesCoverage(
        series_index=series_index,
        coverage=() if anatomy is None else tuple(anatomy.coverage),
        z_range_mm=(float(z.min()), float(z.max())),
        slice_mm=float(step_z.max()),
        frame_of_reference_uid=volume.source.frame_of_reference_uid,
        dense_contrast_veins=()
        if anatomy is None
        else contrast_hidden_regions(anatomy.dense_contrast_veins, anatomy.masks),
        vertebrae=anatomy.vertebrae if anatomy is not None and levels_known(anatomy) else (),
    )


def duplicates(findings: Sequence[Finding], series: Sequence[SeriesCoverage]) -> dict[int, int]:
    """Findings seen twice where series overlap: duplicate id -> the id kept (the larger view).

    Two findings are one object when they come from different series that share a frame of
    reference, have the same category and their bounding boxes overlap (within
    DEDUPE_MARGIN_MM) — the series overlap in z just there. A series without a frame of
    reference UID (NIfTI, NRRD, MetaImage) is taken to share the study's scanner coordinates:
    the files were given as one study.
    """
    frame = {s.series_index: s.frame_of_reference_uid for s in series}
    parent = {f.id: f.id for f in findings}

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    by_id = {f.id: f for f in findings}
    for n, a in enumerate(findings):
        for b in findings[n + 1 :]:
            if a.series_index == b.series_index or a.category != b.category:
                continue
            fa, fb = frame.get(a.series_index), frame.get(b.series_index)
            if (fa is not None and fb is not None and fa != fb) or not _boxes_touch(a, b):
                continue
            ra, rb = find(a.id), find(b.id)
            if ra != rb:
                keep, drop = (ra, rb) if by_id[ra].volume_ml >= by_id[rb].volume_ml else (rb, ra)
                parent[drop] = keep
    return {i: find(i) for i in parent if find(i) != i}


def _boxes_touch(a: Finding, b: Finding) -> bool:
    (a0, a1), (b0, b1) = np.asarray(a.bbox_lps_mm), np.asarray(b.bbox_lps_mm)
    return bool(np.all(a0 - DEDUPE_MARGIN_MM <= b1) and np.all(b0 - DEDUPE_MARGIN_MM <= a1))


def summarise(
    findings: Sequence[Finding],
    series: Sequence[SeriesCoverage] = (),
    *,
    anatomy_available: bool | None = None,
) -> Summary:
    """Treated levels, leak counts, IVC, right heart and pulmonary cement embolism of a study.

    ``series`` says what each series covered (``series_coverage``); a region no series could
    assess has ``present`` null. Objects seen in two overlapping series count once.
    ``anatomy_available`` is accepted for the old call and ignored.
    """
    del anatomy_available
    dupes = duplicates(findings, series)
    unique = [f for f in findings if f.id not in dupes]
    levels = _level_spans(series)

    treated = _treated_levels(unique, levels)
    leaks = Counter(f.category for f in unique if f.category in LEAK_SUMMARY_CATEGORIES)
    leak_dict = {c: leaks[c] for c in LEAK_SUMMARY_CATEGORIES if leaks[c]}

    ivc = _ivc(findings, unique, series, levels)
    chest_series = [s for s in series if set(s.coverage) & set(CHEST_REGIONS)]
    heart = [f for f in unique if f.category == "right_heart"]
    # Where undiluted contrast streams into the right atrium the detector drops what lies there
    # (cement/lookalikes.py, same regions): absence cannot be stated (DESIGN.md §4).
    heart_ok = any(
        not {"right_heart", "heart", RIGHT_ATRIUM} & set(s.dense_contrast_veins)
        for s in chest_series
    )
    right_heart = RegionSummary(
        assessable=heart_ok, present=True if heart else (False if heart_ok else None)
    )
    pce = _pce([f for f in unique if f.category == "pulmonary_artery"], bool(chest_series))
    return Summary(
        treated_levels=treated,
        leak_present=bool(leak_dict) or bool(heart) or bool(pce.count),
        leaks=leak_dict,
        ivc=ivc,
        right_heart=right_heart,
        pce=pce,
    )


def _level_spans(series: Sequence[SeriesCoverage]) -> dict[str, tuple[float, float]]:
    """Each known level's body plus the disc below it, in LPS z, over every series."""
    cranial: dict[str, float] = {}
    caudal: dict[str, float] = {}
    for s in series:
        for v in s.vertebrae:
            if v.level:
                cranial[v.level] = max(cranial.get(v.level, -np.inf), v.z_range_mm[1])
                caudal[v.level] = min(caudal.get(v.level, np.inf), v.z_range_mm[0])
    names = sorted(cranial, key=lambda n: -cranial[n])
    spans = {}
    for n, name in enumerate(names):
        low = cranial[names[n + 1]] if n + 1 < len(names) else caudal[name]
        spans[name] = (low, cranial[name])
    return spans


def _level_at(z_mm: float, spans: dict[str, tuple[float, float]]) -> str | None:
    if not spans:
        return None
    return min(spans, key=lambda n: max(spans[n][0] - z_mm, z_mm - spans[n][1], 0.0))


def _treated_levels(
    unique: list[Finding], spans: dict[str, tuple[float, float]]
) -> tuple[TreatedLevel, ...]:
    """Cement volume per treated body, cranial to caudal (a body without a known level is
    listed on its own)."""
    groups: dict[str | int, list[Finding]] = {}
    for f in unique:
        if f.category == "intravertebral":
            key: str | int = f.level if f.level is not None else f.id
            groups.setdefault(key, []).append(f)

    def height(key: str | int) -> float:
        if isinstance(key, str) and key in VERTEBRAL_LEVELS:
            return -float(VERTEBRAL_LEVELS.index(key)) * 1e4
        return float(np.mean([f.centroid_lps_mm[2] for f in groups[key]]))

    out = []
    for key in sorted(groups, key=lambda k: (isinstance(k, int), -height(k))):
        members = groups[key]
        out.append(
            TreatedLevel(
                level=key if isinstance(key, str) else None,
                cement_volume_ml=round(sum(f.volume_ml for f in members), 3),
                level_offset=None if isinstance(key, str) else members[0].level_offset,
            )
        )
    return tuple(out)


def _ivc(
    findings: Sequence[Finding],
    unique: list[Finding],
    series: Sequence[SeriesCoverage],
    spans: dict[str, tuple[float, float]],
) -> IvcSummary:
    """IVC cement: extent over every series that saw it; assessable where the IVC region was
    covered and not filled with dense contrast (DESIGN.md §4)."""
    assessable = any(
        set(s.coverage) & set(IVC_REGIONS) and "ivc" not in s.dense_contrast_veins for s in series
    )
    seen = [f for f in findings if f.category == "ivc"]
    if not seen:
        return IvcSummary(assessable=assessable, present=False if assessable else None)
    top = max(f.bbox_lps_mm[1][2] for f in seen)
    bottom = min(f.bbox_lps_mm[0][2] for f in seen)
    # Beyond the field of view unless some series reaching that height goes on above the cast.
    below_edge = any(
        s.z_range_mm[0] <= top and top + s.slice_mm / 2 < s.z_range_mm[1] - FOV_EDGE_MARGIN_MM
        for s in series
    )
    return IvcSummary(
        assessable=assessable,
        present=True,
        cranial_extent_level=_level_at(top, spans),
        caudal_extent_level=_level_at(bottom, spans),
        length_mm=round(sum(f.length_mm for f in unique if f.category == "ivc"), 1),
        extends_beyond_fov=not below_edge if series else None,
    )


def _pce(emboli: list[Finding], assessable: bool) -> PceSummary:
    """Pulmonary cement emboli: count, laterality, 2:1 predominance, zones, most proximal."""
    if not emboli:
        return PceSummary(assessable=assessable, present=False if assessable else None)
    right = sum(f.side == "right" for f in emboli)
    left = sum(f.side == "left" for f in emboli)
    laterality = "bilateral" if right and left else "right" if right else "left" if left else "none"
    zones = Counter(f.lung_zone for f in emboli if f.lung_zone is not None)
    zone_predominance = "none"
    if zones:
        top, top_n = max(zones.items(), key=lambda item: item[1])
        others = [zones.get(z, 0) for z in ("upper", "middle", "lower") if z != top]
        zone_predominance = (
            top if all(top_n >= PREDOMINANCE_RATIO * o for o in others) else "diffuse"
        )
    return PceSummary(
        assessable=assessable,
        present=True,
        count=len(emboli),
        laterality=laterality,
        predominance=_predominance(right, left),
        zone_predominance=zone_predominance,
        most_proximal="central" if any(f.central for f in emboli) else "peripheral",
        max_length_mm=round(max(f.length_mm for f in emboli), 1),
    )


def _predominance(right: int, left: int) -> str:
    if right == 0 and left == 0:
        return "none"
    if right >= PREDOMINANCE_RATIO * left:
        return "right"
    if left >= PREDOMINANCE_RATIO * right:
        return "left"
    return "balanced"
