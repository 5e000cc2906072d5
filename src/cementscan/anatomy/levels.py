"""Vertebral levels: counted from the sacrum, the last rib or the first rib, cross-checked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cementscan.anatomy.grid import WorkGrid
from cementscan.anatomy.model import Vertebra
from cementscan.anatomy.vertebrae import BODY_HEIGHT_MM, SpineResult

LEVEL_NAMES: tuple[str, ...] = (
    *(f"C{n}" for n in range(1, 8)),
    *(f"T{n}" for n in range(1, 13)),
    *(f"L{n}" for n in range(1, 6)),
    "S1",
)
# --- ribs ------------------------------------------------------------------------------------
RIB_BONE_HU = 150.0  # a rib's thin cortex, block-averaged onto 2 mm voxels, stays above this
# Ribs are looked for in a box beside the spine: from just beyond the transverse processes'
# tips (thoracic ~25-35 mm from the canal) outwards, in an AP band around the canal.
RIB_MEDIAL_CUT_MM = 36.0
RIB_BOX_LATERAL_MM = 100.0
RIB_BOX_AP_MM = (-50.0, 35.0)  # anterior (-y) to posterior (+y) of the canal's centre
RIB_MEDIAL_END_MM = 44.0  # a rib starts at the cut: it meets the spine
RIB_MIN_REACH_MM = 65.0  # lumbar transverse processes end < ~50-55 mm from the midline
RIB_MAX_HEIGHT_MM = 60.0  # iliac wings and scapulae are taller than a rib's descent here
RIB_MAX_VOLUME_ML = 25.0  # a rib in the box is a few ml; an iliac wing is far more
RIB_MEDIAL_SLAB_MM = 4.0  # the medial end: voxels this close to the rib's most medial one
# Metal streaks: the bright lines that radiate from a pedicle screw (beam hardening, photon
# starvation) reach out beside the spine like a rib, in the slices through the screw only. A
# rib descends past the slices of any screw beside it. Fresh phantoms with augmented lumbar
# screws: streaks (single lines or fans) of 0.2-2 ml, 2-12 mm tall, within the screw's slices,
# their in-plane line passing 0-6 mm from it, were counted as the last ribs and the levels named
# 1-4 off. Ribs beside screws at T11-T12 have 53-84 % of their slices beyond the screws', and
# ribs are 16-60 mm tall where they leave the spine (real 12th ribs 40-50 mm).
RIB_STREAK_SOURCE_HU = 2500.0  # metal on the work grid (and cement dense enough to streak)
RIB_STREAK_MAX_HEIGHT_MM = 14.0
RIB_STREAK_LINE_TO_SOURCE_MM = 6.0
RIB_STREAK_SLICE_MARGIN_MM = 4.0  # a streak's blur reaches a slice beyond the metal's
# A rib belongs to the vertebra it articulates with (its head on the body, its tubercle on the
# transverse process), medial of the box's cut. The lower ribs descend steeply outwards
# (chest-cta's 12th: ~0.8 mm per mm), so their cut end lies at or below the disc under their
# own vertebra; followed back along their own course to the head's distance from the canal
# (the costovertebral joint, ~20 mm), they land inside it.
RIB_COURSE_FIT_MM = 18.0  # the rib's medial stretch whose slope is followed back
RIB_HEAD_LATERAL_MM = 20.0
RIB_MAX_HEAD_SHIFT_MM = 15.0
# --- sacrum ----------------------------------------------------------------------------------
SACRUM_BONE_HU = 150.0  # the alae's thin cortex on 2 mm voxels (abdomen-native-3mm: ~150-250)
SACRUM_ALA_REACH_MM = 70.0  # alae + iliac bones reach far beyond L5's transverse processes
SACRUM_MIN_FRACTION = 0.3  # of a body's slices that must show the alae
SACRUM_SEED_ANTERIOR_MM = (3.0, 40.0)  # the body, in front of the canal's centre
SACRUM_SEED_HALF_WIDTH_MM = 12.0
MIN_RIB_BODIES_ABOVE_S1 = 5  # L1 (a 13th rib) is 5 bodies above S1; L2 and below bear none
RIB_RUN_MAX_GAP = 1  # rib-less bodies within one run of ribs (a rib missed)
# --- confidence ------------------------------------------------------------------------------
CONFIDENCE_SINGLE = {"sacrum": 0.8, "last_rib": 0.7, "first_rib": 0.6}
CONFIDENCE_AGREE = 0.95
# Anchors disagree: a variant (11/13 ribs, a transitional vertebra) or a missed disc. Levels
# still follow the first anchor of ANCHOR_PRIORITY (as a radiologist counts lumbar levels up
# from the sacrum), named with a warning; placement names levels from 0.5 (DESIGN.md §5:
# anatomy failure degrades, never loses).
CONFIDENCE_CONFLICT = 0.5
CONFIDENCE_NONE = 0.0
ANCHOR_PRIORITY = ("sacrum", "last_rib", "first_rib")
NORMAL_LUMBAR_COUNT = 5


@dataclass(frozen=True, eq=False)
class LevelResult:
    """Levels of SpineResult.bodies (same order), the anchor used and its confidence."""

    levels: tuple[str | None, ...]
    has_ribs: tuple[bool | None, ...]
    sacral: tuple[bool, ...]
    level_anchor: str  # sacrum | last_rib | first_rib | none
    level_confidence: float
    anchors_found: dict[str, str]  # anchor -> the level of body 0 it implies
    vertebrae: tuple[Vertebra, ...]  # complete bodies only, for Anatomy.vertebrae
    warnings: tuple[str, ...] = ()

    def mask_names(self) -> dict[str, str]:
        """Ordinal mask names of find_vertebrae -> level names (only where levels are known)."""
        out: dict[str, str] = {}
        for n, level in enumerate(self.levels):
            if level is None:
                continue
            out[f"vertebral_body_{n}"] = f"vertebral_body_{level}"
            if n + 1 < len(self.levels) and self.levels[n + 1] is not None:
                out[f"disc_{n}_{n + 1}"] = f"disc_{level}_{self.levels[n + 1]}"
        return out


def _canal_xy(spine: SpineResult, nz: int) -> np.ndarray:
    """(nz, 2) canal centre per axial slice, held constant beyond the frame's ends."""
    assert spine.frame is not None
    pts = spine.frame.points
    order = np.argsort(pts[:, 2])
    ks = np.arange(nz)
    return np.column_stack(
        [np.interp(ks, pts[order, 2], pts[order, 0]), np.interp(ks, pts[order, 2], pts[order, 1])]
    )


def find_rib_ends(grid: WorkGrid, body: np.ndarray, spine: SpineResult) -> list[tuple[float, str]]:
    """Medial ends of ribs: (z in grid slices, side) of long, thin bone components that start
    beside the spine and run out laterally."""
    sp = grid.spacing_mm
    nx, ny, nz = grid.shape
    canal = _canal_xy(spine, nz)
    xs = np.arange(nx)[:, None, None]
    ys = np.arange(ny)[None, :, None]
    dx = (xs - canal[None, None, :, 0]) * sp
    dy = (ys - canal[None, None, :, 1]) * sp
    box = (
        (np.abs(dx) >= RIB_MEDIAL_CUT_MM)
        & (np.abs(dx) <= RIB_BOX_LATERAL_MM)
        & (dy >= RIB_BOX_AP_MM[0])
        & (dy <= RIB_BOX_AP_MM[1])
    )
    bone = box & (grid.hu >= RIB_BONE_HU) & body
    labels, count = ndimage.label(bone, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return []
    ends: list[tuple[float, str]] = []
    objects = ndimage.find_objects(labels)
    voxel_ml = sp**3 / 1000.0
    # Metal in the spine itself (pedicle screws, rods), medial of the box.
    source = (
        (grid.hu >= RIB_STREAK_SOURCE_HU)
        & (np.abs(dx) < RIB_MEDIAL_CUT_MM)
        & (dy >= RIB_BOX_AP_MM[0])
        & (dy <= RIB_BOX_AP_MM[1])
    )
    margin = int(round(RIB_STREAK_SLICE_MARGIN_MM / sp))
    source_slices = ndimage.maximum_filter1d(source.any(axis=(0, 1)), 2 * margin + 1)
    for index, box_slices in enumerate(objects, start=1):
        if box_slices is None:
            continue
        local = labels[box_slices] == index
        idx = np.argwhere(local) + [s.start for s in box_slices]
        if len(idx) * voxel_ml > RIB_MAX_VOLUME_ML:
            continue
        if (idx[:, 2].max() - idx[:, 2].min() + 1) * sp > RIB_MAX_HEIGHT_MM:
            continue
        lateral = np.abs(dx[idx[:, 0], 0, idx[:, 2]])
        if lateral.min() > RIB_MEDIAL_END_MM or lateral.max() < RIB_MIN_REACH_MM:
            continue
        if _metal_streak(idx, source, source_slices, margin, sp):
            continue
        medial = idx[lateral <= lateral.min() + RIB_MEDIAL_SLAB_MM]
        side = "left" if float(np.mean(dx[medial[:, 0], 0, medial[:, 2]])) > 0 else "right"
        ends.append((_rib_head_slice(idx[:, 2], lateral, float(medial[:, 2].mean()), sp), side))
    return ends


def _metal_streak(
    idx: np.ndarray, source: np.ndarray, source_slices: np.ndarray, margin: int, spacing_mm: float
) -> bool:
    """Whether a rib-like component (voxel indices ``idx``) is a streak from metal: short, in
    ``source_slices`` (the slices within ``margin`` of ``source`` voxels), its in-plane line
    passing through those voxels (see RIB_STREAK_SOURCE_HU)."""
    slices = np.unique(idx[:, 2])
    if (np.ptp(slices) + 1) * spacing_mm > RIB_STREAK_MAX_HEIGHT_MM:
        return False
    if not source_slices[slices].all():
        return False
    xy_mm = idx[:, :2] * spacing_mm
    centre = xy_mm.mean(axis=0)
    normal = np.linalg.svd(xy_mm - centre, full_matrices=False)[2][1]
    near = slice(max(int(slices[0]) - margin, 0), int(slices[-1]) + margin + 1)
    source_mm = np.argwhere(source[:, :, near])[:, :2] * spacing_mm
    return float(np.abs((source_mm - centre) @ normal).min()) <= RIB_STREAK_LINE_TO_SOURCE_MM


def _rib_head_slice(
    k: np.ndarray, lateral_mm: np.ndarray, end_k: float, spacing_mm: float
) -> float:
    """The axial slice of a rib's head: its medial end (``end_k``) followed back along the
    slope of its medial stretch (slices ``k`` at distances ``lateral_mm`` from the canal)."""
    near = lateral_mm <= lateral_mm.min() + RIB_COURSE_FIT_MM
    if np.ptp(lateral_mm[near]) < 0.5 * RIB_COURSE_FIT_MM:
        return end_k
    slope, _ = np.polyfit(lateral_mm[near], k[near].astype(float), 1)  # slices per mm outwards
    shift = slope * (RIB_HEAD_LATERAL_MM - float(lateral_mm[near].min()))
    limit = RIB_MAX_HEAD_SHIFT_MM / spacing_mm
    return end_k + float(np.clip(shift, -limit, limit))


def _body_of_slice(spine: SpineResult, k: float) -> int | None:
    """The body whose cranio-caudal span (disc to disc) holds axial slice k."""
    assert spine.frame is not None
    pts = spine.frame.points
    s = float(np.interp(k, pts[:, 2], np.arange(len(pts))))
    for n, b in enumerate(spine.bodies):
        upper, lower = b.s_range
        if lower <= s <= upper:
            return n
    return None


def _sacral_bodies(grid: WorkGrid, body: np.ndarray, spine: SpineResult) -> list[bool]:
    """Per body: do its axial slices show bone reaching far out on both sides from the body
    (the alae fused with it and joined to the iliac bones)?"""
    sp = grid.spacing_mm
    nz = grid.shape[2]
    canal = _canal_xy(spine, nz)
    assert spine.frame is not None
    out = []
    for b in spine.bodies:
        # The central half of the body: axial slices through a tilted S1 or L5 also cut the
        # neighbour's level at their ends.
        quarter = 0.25 * (b.z_range_mm[1] - b.z_range_mm[0]) / sp
        lo = max(int(np.floor(b.centre_ijk[2] - quarter)), 0)
        hi = min(int(np.ceil(b.centre_ijk[2] + quarter)), nz - 1)
        passing = 0
        total = 0
        for k in range(lo, hi + 1):
            total += 1
            bone = (grid.hu[:, :, k] >= SACRUM_BONE_HU) & body[:, :, k]
            cx, cy = canal[k]
            labels, _ = ndimage.label(ndimage.binary_closing(bone), structure=np.ones((3, 3)))
            # Any bone of the body in front of the canal (its cortex when the core is dim).
            x0, x1 = (
                int(cx - SACRUM_SEED_HALF_WIDTH_MM / sp),
                int(cx + SACRUM_SEED_HALF_WIDTH_MM / sp),
            )
            y0 = int(cy - SACRUM_SEED_ANTERIOR_MM[1] / sp)
            y1 = int(cy - SACRUM_SEED_ANTERIOR_MM[0] / sp)
            window = labels[max(x0, 0) : max(x1 + 1, 0), max(y0, 0) : max(y1 + 1, 0)]
            ids = np.unique(window[window > 0])
            if len(ids) == 0:
                continue
            xs = np.nonzero(np.isin(labels, ids))[0]
            reach_left = (xs.max() - cx) * sp
            reach_right = (cx - xs.min()) * sp
            if min(reach_left, reach_right) >= SACRUM_ALA_REACH_MM:
                passing += 1
        out.append(total > 0 and passing >= SACRUM_MIN_FRACTION * total)
    return out


def _plausible_heights(spine: SpineResult) -> list[bool]:
    """Per body: is its height along the canal (disc to disc) that of a vertebra?"""
    assert spine.frame is not None
    arc = spine.frame.arc_mm
    slices = np.arange(len(arc))
    out = []
    for b in spine.bodies:
        upper, lower = b.s_range
        height = abs(float(np.interp(upper, slices, arc)) - float(np.interp(lower, slices, arc)))
        out.append(BODY_HEIGHT_MM[0] <= height <= BODY_HEIGHT_MM[1])
    return out


def _apart_from_the_ribs(has_ribs: list[bool | None]) -> list[int]:
    """Rib-bearing bodies outside the main run of them: the ribs are one run (T1-T12, with a
    variant at C7 or L1), and one body without a rib found in it is a rib missed; a run beyond
    RIB_RUN_MAX_GAP rib-less bodies is bone of another kind reaching out beside the spine (an
    iliac wing cut by the scan's edge, bridged to the spine by a screw's streaks)."""
    runs: list[list[int]] = []
    for n in (n for n, r in enumerate(has_ribs) if r):
        if runs and n - runs[-1][-1] - 1 <= RIB_RUN_MAX_GAP:
            runs[-1].append(n)
        else:
            runs.append([n])
    if len(runs) <= 1:
        return []
    main = max(runs, key=len)  # the first of equally long runs
    return [n for run in runs if run is not main for n in run]


def _levels_from(anchor_index: int, anchor_level: str, count: int) -> list[str | None]:
    base = LEVEL_NAMES.index(anchor_level) - anchor_index
    return [
        LEVEL_NAMES[base + n] if 0 <= base + n < len(LEVEL_NAMES) else None for n in range(count)
    ]


def assign_levels(grid: WorkGrid, body: np.ndarray, spine: SpineResult) -> LevelResult:
    """Name the bodies of ``spine`` from the anchors the scan holds, with a confidence."""
    n_bodies = len(spine.bodies)
    if n_bodies == 0 or spine.frame is None:
        return LevelResult((), (), (), "none", CONFIDENCE_NONE, {}, (), ("no vertebrae",))
    warnings: list[str] = []
    # Ribs per body.
    has_ribs: list[bool | None] = [False if b.complete else None for b in spine.bodies]
    for k, _side in find_rib_ends(grid, body, spine):
        n = _body_of_slice(spine, k)
        if n is not None:
            has_ribs[n] = True
    sacral = _sacral_bodies(grid, body, spine)
    anchors: dict[str, int] = {}  # anchor -> index of the body it names
    # Sacrum: the most cranial of a run of sacral bodies reaching the caudal end; L5 above it.
    # (A partial segment below it, cut by the scan's edge or the coccyx, does not count.)
    bottom = n_bodies - 1
    if bottom > 0 and not spine.bodies[bottom].complete and not sacral[bottom]:
        bottom -= 1
    if sacral and sacral[bottom]:
        top = bottom
        while top > 0 and sacral[top - 1]:
            top -= 1
        if top >= 1:
            anchors["sacrum"] = top - 1  # L5
            if bottom - top + 1 > 1:
                warnings.append("more than one body fused with the alae: transitional vertebra?")
    if "sacrum" in anchors:
        # L1 lies 5 bodies above S1 and carries a rib only as a variant (13 pairs); lower
        # bodies never do: bone reaching out beside them is something else (an enhancing kidney
        # against a transverse process, a calcified vessel, cement in a vein).
        s1 = anchors["sacrum"] + 1
        too_low = [n for n, r in enumerate(has_ribs) if r and s1 - n < MIN_RIB_BODIES_ABOVE_S1]
        for n in too_low:
            has_ribs[n] = False
        if too_low:
            warnings.append(
                f"bone reaching out like a rib beside bodies {too_low}, fewer than "
                f"{MIN_RIB_BODIES_ABOVE_S1} above the sacrum: not counted as ribs"
            )
    stray = _apart_from_the_ribs(has_ribs)
    for n in stray:
        has_ribs[n] = False
    if stray:
        warnings.append(
            f"bone reaching out like a rib beside bodies {stray}, apart from the ribs: not "
            "counted as ribs"
        )
    rib_idx = [n for n, r in enumerate(has_ribs) if r]
    # A rib anchor counts only where both bodies beside the change are body-sized: a chain
    # that is no spine (a mediastinal crop: "bodies" of 4 and 150 mm) names nothing.
    plausible = _plausible_heights(spine)
    if rib_idx:
        last, first = max(rib_idx), min(rib_idx)
        if last + 1 < n_bodies and has_ribs[last + 1] is False and all(plausible[last : last + 2]):
            anchors["last_rib"] = last  # T12
        if first >= 1 and has_ribs[first - 1] is False and all(plausible[first - 1 : first + 1]):
            anchors["first_rib"] = first  # T1
        gaps = [n for n in range(first, last + 1) if has_ribs[n] is False]
        if gaps:
            warnings.append(f"no rib found beside bodies {gaps} between rib-bearing ones")
    implied = {
        "sacrum": ("L5", anchors.get("sacrum")),
        "last_rib": ("T12", anchors.get("last_rib")),
        "first_rib": ("T1", anchors.get("first_rib")),
    }
    base_of: dict[str, int] = {}
    for name, (level, index) in implied.items():
        if index is not None:
            base_of[name] = LEVEL_NAMES.index(level) - index
    if not base_of:
        return LevelResult(
            tuple([None] * n_bodies), tuple(has_ribs), tuple(sacral), "none", CONFIDENCE_NONE,
            {}, _vertebrae(spine, [None] * n_bodies, has_ribs),
            (*warnings, "no level anchor (sacrum, last or first rib) in the scan"),
        )  # fmt: skip
    chosen = next(a for a in ANCHOR_PRIORITY if a in base_of)
    agreeing = [a for a in base_of if base_of[a] == base_of[chosen]]
    disagreeing = [a for a in base_of if base_of[a] != base_of[chosen]]
    if disagreeing:
        confidence = CONFIDENCE_CONFLICT
        if "sacrum" in anchors and "last_rib" in anchors:
            lumbar = anchors["sacrum"] - anchors["last_rib"]  # bodies below T12 down to L5
            if lumbar != NORMAL_LUMBAR_COUNT:
                warnings.append(_lumbar_count_warning(lumbar))
        for other in disagreeing:
            shift = base_of[other] - base_of[chosen]
            warnings.append(
                f"level anchors disagree: {other} puts every level {abs(shift)} "
                f"{'lower' if shift > 0 else 'higher'} than {chosen} (11 or 13 rib pairs or a "
                f"transitional lumbosacral vertebra); levels follow {chosen}"
            )
    elif len(agreeing) > 1:
        confidence = CONFIDENCE_AGREE
    else:
        confidence = CONFIDENCE_SINGLE[chosen]
    if "first_rib" in anchors and "last_rib" in anchors:
        pairs = anchors["last_rib"] - anchors["first_rib"] + 1
        if pairs != 12:
            warnings.append(f"{pairs} rib-bearing vertebrae (12 expected)")
    base = base_of[chosen]
    levels: list[str | None] = [
        LEVEL_NAMES[base + n] if 0 <= base + n < len(LEVEL_NAMES) else None for n in range(n_bodies)
    ]
    return LevelResult(
        tuple(levels), tuple(has_ribs), tuple(sacral), chosen, float(confidence),
        {a: LEVEL_NAMES[b] if 0 <= b < len(LEVEL_NAMES) else "?" for a, b in base_of.items()},
        _vertebrae(spine, levels, has_ribs), tuple(warnings),
    )  # fmt: skip


def _lumbar_count_warning(lumbar: int) -> str:
    """Name the variants that put ``lumbar`` bodies between the last rib-bearing one and the
    sacrum (5 normally)."""
    if lumbar < NORMAL_LUMBAR_COUNT:
        likely = "13 rib pairs (ribs on L1) or a sacralised L5"
    else:
        likely = "11 rib pairs (no rib on T12) or a lumbarised S1"
    return (
        f"{lumbar} bodies between the last rib-bearing one and the sacrum "
        f"({NORMAL_LUMBAR_COUNT} expected): likely {likely}"
    )


def _vertebrae(
    spine: SpineResult, levels: list[str | None], has_ribs: list[bool | None]
) -> tuple[Vertebra, ...]:
    out = []
    for b, level, ribs in zip(spine.bodies, levels, has_ribs, strict=True):
        if b.complete and b.centroid_lps_mm is not None:
            out.append(Vertebra(level, b.centroid_lps_mm, b.z_range_mm, ribs))
    return tuple(out)
