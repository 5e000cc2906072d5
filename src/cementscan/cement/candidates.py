"""Cement from the CT: per-scan calibrated dense components, judged by density, shape and context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from cementscan.anatomy.model import Anatomy
from cementscan.boxes import dilate_box, grow_box
from cementscan.cement.calibration import SATURATED_HU, Calibration, calibrate
from cementscan.cement.context import AIR_HU, Context, compute_context
from cementscan.cement.judge import (
    SATELLITE_CONFIDENCE,
    SATELLITE_REACH_MM,
    judge,
    satellite_candidate,
)
from cementscan.cement.lookalikes import remove_lookalikes
from cementscan.io.volume import CTVolume, memory_axes

CONNECTIVITY = np.ones((3, 3, 3), bool)  # 26-connectivity: thin oblique tracts stay one piece
IN_PLANE = np.zeros((3, 3, 3), bool)  # 4-connectivity within each axial slice
IN_PLANE[1, :, 1] = IN_PLANE[:, 1, 1] = True
STANDARD_SCALE_TOP_HU = 3071  # values above it exist only in extended-scale reconstructions
# Metal: saturated clusters this large (a screw, a clip); isolated saturated voxels in dense cement
# are noise. What is left beside the metal (its partial-volume rim) is judged with the metal in
# mind (features["near_metal"]): a thin rim has no thick core, cement around a screw does.
METAL_MIN_ML = 0.01
METAL_HALO_MM = 1.0  # sub-voxel at 2 mm: only the saturated metal itself goes
METAL_RIM_MM = 3.0  # a metal's partial-volume rim and blooming lie within this of it
STREAK_RING_MM = (6.0, 30.0)  # where metal streaks are looked for, around the component
# Streaks: bands far darker than fat (-100) inside soft tissue, next to dense material.
STREAK_DARK_HU = -200
# Around a lung focus: beyond its partial-volume rim, within a vessel's reach.
VESSEL_SHELL_MM = (1.5, 7.0)
VESSEL_HU = -400  # pulmonary vessels (blood 30-60 HU, partial-volumed in 2-5 mm voxels) vs lung
# Grown voxels (between grow_hu and seed_hu) belong to thick cement only within its partial-volume
# rim: about a voxel and the scanner's blur beyond its dense part (inserted cement: <= 2 mm at
# 1 x 1 x 2 mm). Cortex denser than this scan's calibrated cortex, touching cement, would otherwise
# carry the cement's component along the vertebral shell (18 mm in a real T12).
GROW_REACH_MM = 3.0
# Thickness: seed-dense material that survives an in-plane erosion of this radius is not cortex
# (a shell of 1-2 mm). Below the seed, down to Calibration.core_hu, a core must also be thick
# across thin slices (as many whole slices each way as fit in the radius: one at 1-1.5 mm, none
# at 2 mm and more, where partial volume across the slice thins such a plate out): an endplate,
# seen flat in an axial slice, is as wide as the body, and degenerative sclerosis makes it dense.
# Voxels of such a core also seed a component, so that cement no denser than a dense cortex's
# peaks is still found where it is thick (a vertebral fill).
CORE_RADIUS_MM = 1.5
# The lumen around a dense focus: a ring beyond its partial-volume rim, within a vessel's radius.
# Judged only for foci small enough to lie inside a lumen (emboli, spikes, fragments: < 1 ml,
# clinical-evidence.md §2.2, §3); the measure costs a distance transform of the focus' box.
LUMEN_RING_MM = (2.0, 5.0)
LUMEN_MAX_ML = 2.0
# A voxel of the ring is "at the lumen's level" within this much of the ring's median
# (noise 10-20 HU, contrast varying 20-40 HU over 10 mm in a lumen).
LUMEN_TOLERANCE = (100.0, 0.25)  # HU, and fraction of the median, whichever is larger


@dataclass(frozen=True)
class Candidate:
    """One connected dense component, measured in the volume's own voxels and in LPS mm."""

    label: int  # its value in Candidates.labels
    voxel_count: int
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    bbox_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]]
    length_mm: float
    max_diameter_mm: float
    mean_hu: float
    max_hu: float
    confidence: float = 1.0  # how likely this is cement, 0..1 (calibration: benchmarks/)
    kind: str = "dense"  # what it was judged as: intraosseous, extraosseous, lung_focus, ...
    features: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Candidates:
    labels: np.ndarray  # int32 [i, j, k]; 0 background, n = candidates[n - 1]
    candidates: tuple[Candidate, ...]
    calibration: Calibration | None = None
    rejected: tuple[Candidate, ...] = ()  # components judged not cement, with the reason in kind


@dataclass(frozen=True, eq=False)
class Components:
    """The dense components of one CT, judged from the CT alone (before anatomy is consulted)."""

    labels: np.ndarray  # int32 [i, j, k]; n = the component with box boxes[n - 1]
    boxes: list[tuple[slice, ...] | None]
    judged: list[Candidate]
    calibration: Calibration


def find_cement(volume: CTVolume, anatomy: Anatomy | None = None) -> Candidates:
    """The cement in ``volume``: each connected piece with a confidence, and their label map.

    Finding never depends on ``anatomy``: components come from this scan's own calibrated
    densities and are judged on density, shape and context read from the CT. ``anatomy`` can
    only remove look-alikes (a calcified aortic wall, undiluted contrast in a vein).
    """
    found = find_components(volume)
    labels, boxes, judged, cal = found.labels, found.boxes, found.judged, found.calibration
    if anatomy is not None:
        judged = remove_lookalikes(judged, anatomy, labels, volume, boxes, opacified=cal.opacified)
    satellites = _satellites(judged, labels, boxes, volume, cal)
    if satellites and anatomy is not None:
        fresh = remove_lookalikes(
            [judged[n] for n in satellites], anatomy, labels, volume, boxes, cal.opacified
        )
        for n, cand in zip(satellites, fresh, strict=True):
            judged[n] = cand
    kept = [c for c in judged if c.confidence > 0.0]
    rejected = tuple(c for c in judged if c.confidence <= 0.0)
    final_labels = np.zeros(volume.shape, np.int32)
    final: list[Candidate] = []
    for n, cand in enumerate(kept, start=1):
        box = boxes[cand.label - 1]
        assert box is not None
        final_labels[box][labels[box] == cand.label] = n
        final.append(replace(cand, label=n))
    return Candidates(final_labels, tuple(final), cal, rejected)


def _satellites(
    judged: list[Candidate],
    labels: np.ndarray,
    boxes: list[tuple[slice, ...] | None],
    volume: CTVolume,
    cal: Calibration,
) -> list[int]:
    """Turn the faint leak fragments near this study's thick cement (kind "blob", kept) into
    candidates of kind "satellite" (judge.py SATELLITE_MIN_ML), in place; their indices."""
    blobs = {c.label for c in judged if c.kind == "blob" and c.confidence > 0.0}
    if not blobs:
        return []
    reach = tuple(int(np.ceil(SATELLITE_REACH_MM / s)) for s in volume.spacing_mm)
    found = []
    for n, cand in enumerate(judged):
        box = boxes[cand.label - 1]
        if box is None or not satellite_candidate(cand, cal):
            continue
        around = grow_box(box, reach, volume.shape)
        near = labels[around]
        blob = np.isin(near, list(blobs))
        if not blob.any():
            continue
        distance_mm = ndimage.distance_transform_edt(~blob, sampling=volume.spacing_mm)
        if distance_mm[near == cand.label].min() <= SATELLITE_REACH_MM:
            judged[n] = replace(cand, confidence=SATELLITE_CONFIDENCE, kind="satellite")
            found.append(n)
    return found


def find_components(volume: CTVolume) -> Components:
    """The dense components of ``volume`` from its own calibrated densities, each measured and
    judged on density, shape and context read from the CT."""
    hu = volume.hu
    context = compute_context(hu, volume.spacing_mm)
    lung_values = _lung_sample(hu, context)
    cal = calibrate(hu, volume.spacing_mm, lung_values, context.pool_values)
    # The masks are made in the CT's memory order (a loaded NIfTI is Fortran-ordered [i, j, k]):
    # mixing memory orders in one elementwise operation costs seconds at 512^2 x 300. Every step
    # up to the labelling is symmetric under the axis permutation, so the masks are the same.
    axes = memory_axes(hu)
    inverse = tuple(int(a) for a in np.argsort(axes))
    hu_m = hu.transpose(axes)
    mask_m = _dense_mask(hu_m, cal, volume.spacing_mm, axes)
    mask_m |= _lung_mask(hu_m, cal, context, axes)
    metal_m = _metal_halo(hu_m, mask_m, volume.spacing_mm, axes)
    mask_m &= ~metal_m
    labels, boxes = _label_cropped(mask_m.transpose(inverse))
    metal = metal_m.transpose(inverse)
    near_metal = _touching(labels, metal, len(boxes))
    del mask_m
    judged: list[Candidate] = []
    for index, box in enumerate(boxes, start=1):
        if box is None:
            continue
        metal_ml, off_metal_ml = (
            _metal_reach(volume, labels, index, box, metal, cal)
            if near_metal[index]
            else (0.0, 0.0)
        )
        metal_features = {
            "near_metal": float(near_metal[index]),
            "metal_ml": metal_ml,
            "off_metal_ml": off_metal_ml,
        }
        candidate = _measure(volume, labels, index, box, cal, context)
        candidate.features.update(metal_features)
        candidate = judge(candidate, cal, volume.spacing_mm)
        if candidate.kind == "blob" and _trim_to_reach(volume, labels, index, box, cal):
            candidate = _measure(volume, labels, index, box, cal, context)
            candidate.features.update(metal_features)
            candidate = judge(candidate, cal, volume.spacing_mm)
        judged.append(candidate)
    return Components(labels, boxes, judged, cal)


def _trim_to_reach(
    volume: CTVolume, labels: np.ndarray, index: int, box: tuple[slice, ...], cal: Calibration
) -> bool:
    """Drop the grown voxels of component ``index`` farther than GROW_REACH_MM (per axis, at
    least one voxel) from its seed-dense voxels; whether any were dropped.

    Only for thick cement (a "blob"): the dense cortex of the vertebra it fills, touching it,
    is not cement. Cortex and contrast components keep their extent, which is what tells them
    apart (a shell, a column)."""
    sub = labels[box]
    mask = sub == index
    half_width = [max(1, int(round(GROW_REACH_MM / s))) for s in volume.spacing_mm]
    reach = dilate_box(mask & _seeds(volume.hu[box], cal, volume.spacing_mm), half_width)
    far = mask & ~reach
    if not far.any():
        return False
    sub[far] = 0
    return True


def _metal_halo(
    hu: np.ndarray,
    mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    axes: tuple[int, ...] = (0, 1, 2),
) -> np.ndarray:
    """Saturated clusters of at least METAL_MIN_ML and a partial-volume halo around them.

    Metal is removed before components are formed, so that cement around a cement-augmented
    pedicle screw stays a candidate of its own while the screw does not. ``hu`` and ``mask``
    are the CT's arrays transposed by ``axes``.
    """
    saturated = mask & (hu >= SATURATED_HU)
    out = np.zeros(hu.shape, bool)
    labels, boxes = _label_cropped(saturated)
    if not boxes:
        return out
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    halo = tuple(int(np.floor(METAL_HALO_MM / spacing_mm[a])) for a in axes)
    structure = np.ones(tuple(2 * h + 1 for h in halo), bool)
    for index, cluster_box in enumerate(boxes, start=1):
        # Counted within each cluster's box: a whole-volume bincount costs seconds at 512^2 x 300.
        if cluster_box is None:
            continue
        if np.count_nonzero(labels[cluster_box] == index) * voxel_ml < METAL_MIN_ML:
            continue
        box = grow_box(cluster_box, halo, hu.shape)
        out[box] |= ndimage.binary_dilation(labels[box] == index, structure=structure)
    return out


def _metal_reach(
    volume: CTVolume,
    labels: np.ndarray,
    index: int,
    box: tuple[slice, ...],
    metal: np.ndarray,
    cal: Calibration,
) -> tuple[float, float]:
    """The volume of metal within METAL_RIM_MM of component ``index`` (a screw's: about a
    millilitre; a wire's, a clip's or a filter strut's: a tenth), and the component's seed-dense
    volume beyond the metal's rim: a screw's blooming stays within METAL_RIM_MM of it and its
    partial volume within the voxels touching it (at coarse pixels, farther than METAL_RIM_MM);
    the cement mantle of an augmented screw reaches beyond both."""
    spacing = np.asarray(volume.spacing_mm, float)
    grown = grow_box(box, tuple(int(np.ceil(METAL_RIM_MM / s)) + 1 for s in spacing), volume.shape)
    dense = (labels[grown] == index) & (volume.hu[grown] >= cal.seed_hu)
    touching = ndimage.binary_dilation(metal[grown], structure=CONNECTIVITY)
    distance_mm = ndimage.distance_transform_edt(~metal[grown], sampling=spacing)
    beyond = dense & ~touching & (distance_mm > METAL_RIM_MM)
    metal_ml = float(np.count_nonzero(metal[grown])) * volume.voxel_volume_ml
    return metal_ml, float(np.count_nonzero(beyond)) * volume.voxel_volume_ml


def _touching(labels: np.ndarray, region: np.ndarray, count: int) -> np.ndarray:
    """For each label 0..count, whether it touches ``region`` (26-neighbourhood)."""
    out = np.zeros(count + 1, bool)
    if count == 0 or not region.any():
        return out
    axes = [
        np.flatnonzero(region.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    box = tuple(
        slice(max(0, int(a[0]) - 1), min(n, int(a[-1]) + 2))
        for a, n in zip(axes, region.shape, strict=True)
    )
    sub = np.ascontiguousarray(region[box])
    rim = ndimage.binary_dilation(sub, structure=CONNECTIVITY) & ~sub
    out[np.unique(labels[box][rim])] = True
    out[0] = False
    return out


def _lung_sample(hu: np.ndarray, context: Context) -> np.ndarray | None:
    core = context.lung_core & context.lung
    if not core.any():
        return None
    coarse = hu[:: context.step[0], :: context.step[1], :: context.step[2]]
    return np.asarray(coarse[core])


def _dense_mask(
    hu: np.ndarray,
    cal: Calibration,
    spacing_mm: tuple[float, float, float],
    axes: tuple[int, ...] = (0, 1, 2),
) -> np.ndarray:
    """Hysteresis: voxels >= grow_hu connected to a seed (_seeds). ``hu`` is the CT's array
    transposed by ``axes``, and so is the mask returned; ``spacing_mm`` is the CT's."""
    return _hysteresis(hu >= cal.grow_hu, lambda box: _seeds(hu[box], cal, spacing_mm, axes))


def _seeds(
    hu: np.ndarray,
    cal: Calibration,
    spacing_mm: tuple[float, float, float],
    axes: tuple[int, ...] = (0, 1, 2),
) -> np.ndarray:
    """Voxels of ``hu`` (the CT's array, or a box of it, transposed by ``axes``) at least
    seed_hu, or in a thick core at core_hu (_core)."""
    seeds = hu >= cal.seed_hu
    if cal.core_hu < cal.seed_hu:
        seeds |= _core(hu >= cal.core_hu, spacing_mm, axes, through_slices=True)
    return seeds


def _core(
    mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    axes: tuple[int, ...] = (0, 1, 2),
    through_slices: bool = False,
) -> np.ndarray:
    """The voxels of ``mask`` that survive an erosion of CORE_RADIUS_MM (at least one voxel) in
    the CT's axial plane, and with ``through_slices`` across the slices too (the whole slices
    that fit in the radius); ``mask`` is [i, j, k] (k axial) transposed by ``axes``."""
    radius = [max(1, int(round(CORE_RADIUS_MM / s))) for s in spacing_mm[:2]]
    radius_k = int(CORE_RADIUS_MM // spacing_mm[2]) if through_slices else 0
    shape = (2 * radius[0] + 1, 2 * radius[1] + 1, 2 * radius_k + 1)
    structure = np.ones(shape, bool).transpose(axes)
    return np.asarray(ndimage.binary_erosion(mask, structure=structure))


def _lung_mask(
    hu: np.ndarray, cal: Calibration, context: Context, axes: tuple[int, ...] = (0, 1, 2)
) -> np.ndarray:
    """Dense foci inside lung: above this scan's pulmonary vessels (hysteresis), in the lung crop.

    ``hu`` is the CT's array transposed by ``axes``, and so is the mask returned."""
    out = np.zeros(hu.shape, bool)
    if not context.lung.any():
        return out
    where = np.argwhere(context.lung)
    step = np.asarray(context.step)
    low = where.min(axis=0) * step
    high = np.minimum((where.max(axis=0) + 1) * step, [hu.shape[axes.index(a)] for a in range(3)])
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    lung = context.crop(context.lung, box, axes)
    box = tuple(box[a] for a in axes)
    sub = hu[box]
    grown = (sub >= cal.lung_grow_hu) & lung
    out[box] = _hysteresis(grown, lambda b: sub[b] >= cal.lung_seed_hu)
    return out


def _hysteresis(grown: np.ndarray, seeds: Callable[[tuple[slice, ...]], np.ndarray]) -> np.ndarray:
    """The components of ``grown`` holding a seed; ``seeds(box)`` is the seed mask in a box."""
    out = np.zeros(grown.shape, bool)
    box = _bounding_box(grown)
    if box is None:
        return out
    # Labelled on the bounding box of the grown voxels only; which components hold a seed is
    # read at the seed voxels (a seed outside ``grown`` reads the background, 0).
    labels, count = ndimage.label(grown[box], structure=CONNECTIVITY)
    seeded = np.zeros(count + 1, bool)
    seeded[labels[seeds(box)]] = True
    seeded[0] = False
    out[box] = seeded[labels]
    return out


def _label_cropped(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, ...] | None]]:
    """Connected components of ``mask``, labelled on the bounding box of its voxels only."""
    labels = np.zeros(mask.shape, np.int32)
    box = _bounding_box(mask)
    if box is None:
        return labels, []
    # Labelled C-ordered: the labels' numbering follows the C raster order of ``mask``'s indices.
    sub, _ = ndimage.label(np.ascontiguousarray(mask[box]), structure=CONNECTIVITY)
    labels[box] = sub
    boxes = ndimage.find_objects(sub)
    shifted: list[tuple[slice, ...] | None] = []
    for b in boxes:
        if b is None:
            shifted.append(None)
            continue
        shifted.append(
            tuple(slice(s.start + o.start, s.stop + o.start) for s, o in zip(b, box, strict=True))
        )
    return labels, shifted


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s voxels, None when it has none."""
    axes = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    if any(len(a) == 0 for a in axes):
        return None
    return tuple(slice(int(a[0]), int(a[-1]) + 1) for a in axes)


def _measure(
    volume: CTVolume,
    labels: np.ndarray,
    index: int,
    box: tuple[slice, ...],
    cal: Calibration,
    context: Context,
) -> Candidate:
    spacing = np.asarray(volume.spacing_mm)
    shell_vox = tuple(max(1, int(np.ceil(VESSEL_SHELL_MM[1] / s)) + 1) for s in spacing)
    big = grow_box(box, shell_vox, volume.shape)
    hu_big = volume.hu[big]
    mask_big = labels[big] == index
    offset = np.array([s.start for s in big])
    ijk = np.argwhere(mask_big) + offset
    values = hu_big[mask_big].astype(np.float32)
    lps = volume.index_to_lps(ijk)
    length_mm, diameter_mm, width_mm = _extents_mm(lps, float(spacing.min()))
    third_mm = _extents_mm(lps, float(spacing.min()), third=True)[2]
    low, high = lps.min(axis=0), lps.max(axis=0)
    voxel_ml = volume.voxel_volume_ml

    dense = mask_big & (hu_big >= cal.seed_hu)
    core = _core(dense, volume.spacing_mm)
    if cal.core_hu < cal.seed_hu:
        core_dense = mask_big & (hu_big >= cal.core_hu)
        core |= _core(core_dense, volume.spacing_mm, through_slices=True)
    # Shell around the component: what it is embedded in.
    shell = ndimage.binary_dilation(mask_big, structure=np.ones((3, 3, 3), bool), iterations=1)
    shell &= ~mask_big
    hu_shell = hu_big[shell].astype(np.float32)
    n_shell = max(len(hu_shell), 1)
    air_frac = float(np.count_nonzero(hu_shell < AIR_HU)) / n_shell
    bone_frac = float(np.count_nonzero((hu_shell >= 150) & (hu_shell < cal.grow_hu))) / n_shell
    soft_frac = float(np.count_nonzero((hu_shell >= -200) & (hu_shell < 150))) / n_shell
    in_lung = float(context.lookup(context.lung, ijk).mean())
    # A rib or a costal cartilage crossing into the lung mask continues beyond it, dense; a
    # lone focus in a lung artery is ringed by air and vessel.
    dense_outside_lung_ml = 0.0
    if in_lung >= 0.5:
        shell_ijk = np.argwhere(shell) + offset
        outside = ~context.lookup(context.lung, shell_ijk)
        dense_outside = np.count_nonzero(outside & (hu_shell >= cal.lung_seed_hu))
        dense_outside_lung_ml = float(dense_outside) * voxel_ml
    saturated = float(np.count_nonzero(values >= SATURATED_HU)) / len(values)
    streak = _streak_score(volume, ijk, spacing, context)
    vessel_frac, asymmetry = (
        _vessel_context(hu_big, mask_big, spacing) if in_lung >= 0.5 else (0.0, 1.0)
    )
    projected_hu, projected_diameter_mm = (
        projected_density(hu_big, mask_big, spacing, cal.lung_vessel_hu)
        if in_lung >= 0.5
        else (0.0, 0.0)
    )
    p90_hu = float(np.percentile(values, 90))
    lumen_hu, lumen_homogeneity, in_pool = 0.0, 0.0, 0.0
    if cal.blood_hu is not None and len(context.pool_values) > 0:
        in_pool = float(context.lookup(context.pool, ijk).mean())
        if in_pool > 0.0 and len(values) * voxel_ml <= LUMEN_MAX_ML and p90_hu >= cal.seed_hu:
            lumen_hu, lumen_homogeneity = _lumen_context(hu_big, mask_big, spacing)
    # Cortex is a shell around marrow (a ring in its slices); cement fills what it occupies.
    filled = ndimage.binary_fill_holes(mask_big, structure=IN_PLANE)
    hollow = 1.0 - len(values) / max(float(np.count_nonzero(filled)), 1.0)
    features = {
        "voxels": float(len(values)),
        "p90_hu": p90_hu,
        "core_ml": float(np.count_nonzero(core)) * voxel_ml,
        "seed_ml": float(np.count_nonzero(dense)) * voxel_ml,
        "air_shell": air_frac,
        "bone_shell": bone_frac,
        "soft_shell": soft_frac,
        "in_lung": in_lung,
        "dense_outside_lung_ml": dense_outside_lung_ml,
        "saturated": saturated,
        "beyond_scale": float(values.max() > STANDARD_SCALE_TOP_HU),
        "streak": streak,
        "width_mm": width_mm,
        "elongation": length_mm / max(width_mm, float(spacing.min())),
        # Share of the principal-axes ellipsoid the component fills: wires and frames are sparse.
        "fill": len(values) * voxel_ml * 1000.0 / (np.pi / 6.0 * length_mm * width_mm * third_mm),
        "hollow": hollow,
        "vessel_frac": vessel_frac,
        "asymmetry": asymmetry,
        "projected_hu": projected_hu,
        "projected_diameter_mm": projected_diameter_mm,
        "depth_mm": float(len(np.unique(ijk[:, 2]))) * float(spacing[2]),
        "at_scan_end": float(ijk[:, 2].min() == 0 or ijk[:, 2].max() == volume.shape[2] - 1),
        "in_pool": in_pool,
        "lumen_hu": lumen_hu,
        "lumen_homogeneity": lumen_homogeneity,
    }
    return Candidate(
        label=index,
        voxel_count=len(values),
        volume_ml=len(values) * voxel_ml,
        centroid_lps_mm=_point(lps.mean(axis=0)),
        bbox_lps_mm=(_point(low), _point(high)),
        length_mm=length_mm,
        max_diameter_mm=diameter_mm,
        mean_hu=float(values.mean()),
        max_hu=float(values.max()),
        features=features,
    )


def _vessel_context(
    hu_big: np.ndarray, mask_big: np.ndarray, spacing: np.ndarray
) -> tuple[float, float]:
    """How a lung focus sits on the vessels around it, in a shell VESSEL_SHELL_MM from it.

    Returns the fraction of the shell that is vessel (soft-tissue density) and the asymmetry of
    those vessel voxels about the focus' centre (|mean offset| / mean distance): an embolus
    lodged in an artery has the vessel leaving it on opposite sides (low asymmetry), a calcified
    granuloma beside a vessel has it on one side (high), an isolated granuloma has none.
    """
    distance = ndimage.distance_transform_edt(~mask_big, sampling=spacing)
    shell = (distance > VESSEL_SHELL_MM[0]) & (distance <= VESSEL_SHELL_MM[1])
    if not shell.any():
        return 0.0, 1.0
    vessel = shell & (hu_big > VESSEL_HU)
    fraction = float(np.count_nonzero(vessel)) / float(np.count_nonzero(shell))
    if not vessel.any():
        return 0.0, 1.0
    centre = np.argwhere(mask_big).mean(axis=0)
    offsets = (np.argwhere(vessel) - centre) * spacing
    mean_distance = float(np.linalg.norm(offsets, axis=1).mean())
    asymmetry = float(np.linalg.norm(offsets.mean(axis=0))) / max(mean_distance, 1e-6)
    return fraction, asymmetry


def projected_density(
    hu_big: np.ndarray, mask_big: np.ndarray, spacing: np.ndarray, background_hu: float
) -> tuple[float, float]:
    """The density (HU) and diameter (mm) of a lung focus as a ball, from its excess attenuation
    over ``background_hu`` (this scan's lung vessels) summed along the slice axis.

    Partial volume and blur spread a focus smaller than the slice over its voxels but keep its
    excess attenuation: the column through a ball's centre sums to (density - background) x
    diameter, and the whole focus to (density - background) x its volume, whatever the slice
    thickness or the ball's offset in its slices. Their ratio gives the diameter and then the
    density. A focus that is not a ball reads less dense (a rod across the slices: its spread
    widens the estimated diameter), except one long along the slice axis, which the caller rules
    out by its depth. Lung air mixed into a voxel pushes it below the background and its excess
    is lost: a ball ringed by air in its own slices reads low, one whose rim alone borders air
    (a ball wider than the artery through it) up to 40 % high. Balls drawn with partial volume
    (tests/test_cement_detection.py): an embolus filling its artery within 15 %, calcium beside
    an artery or alone at most 10 % high."""
    window = ndimage.binary_dilation(mask_big, structure=CONNECTIVITY)
    excess = np.where(window, np.clip(hu_big.astype(np.float32) - background_hu, 0.0, None), 0.0)
    column = excess.sum(axis=2) * float(spacing[2])  # HU x mm, over each in-plane position
    peak = float(column.max())
    if peak <= 0.0:
        return background_hu, 0.0
    total = float(column.sum()) * float(spacing[0] * spacing[1])  # HU x mm^3
    diameter_mm = float(np.sqrt(6.0 * total / (np.pi * peak)))  # ball: total = peak * pi d^2 / 6
    return background_hu + peak / diameter_mm, diameter_mm


def _lumen_context(
    hu_big: np.ndarray, mask_big: np.ndarray, spacing: np.ndarray
) -> tuple[float, float]:
    """The level of what surrounds a focus, beyond its partial-volume rim (LUMEN_RING_MM), and
    the share of that ring at this level (LUMEN_TOLERANCE): a focus inside a contrast-filled
    lumen is ringed by blood at one level (1.0), one at a wall, in bone or beside other dense
    material by several (fat, wall, cortex, mixing contrast)."""
    reach = tuple(int(np.ceil(LUMEN_RING_MM[1] / s)) + 1 for s in spacing)
    where = np.argwhere(mask_big)
    low = np.maximum(where.min(axis=0) - reach, 0)
    high = np.minimum(where.max(axis=0) + 1 + np.asarray(reach), mask_big.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    distance = ndimage.distance_transform_edt(~mask_big[box], sampling=spacing)
    ring = (distance > LUMEN_RING_MM[0]) & (distance <= LUMEN_RING_MM[1])
    values = hu_big[box][ring].astype(np.float32)
    if len(values) == 0:
        return 0.0, 0.0
    level = float(np.median(values))
    tolerance = max(LUMEN_TOLERANCE[0], LUMEN_TOLERANCE[1] * abs(level))
    return level, float(np.count_nonzero(np.abs(values - level) <= tolerance)) / len(values)


def _streak_score(
    volume: CTVolume, ijk: np.ndarray, spacing: np.ndarray, context: Context
) -> float:
    """Fraction of soft-tissue ring voxels that are far darker than fat in the component's
    densest slice: beam-hardening streaks around metal (clinical-evidence.md §4: metal saturates
    the scale); cement, calcium and contrast do not cast them at the same strength."""
    hu = volume.hu
    k_values, counts = np.unique(ijk[:, 2], return_counts=True)
    k = int(k_values[int(np.argmax(counts))])
    ci, cj = ijk[ijk[:, 2] == k, :2].mean(axis=0)
    r_out = [int(np.ceil(STREAK_RING_MM[1] / s)) for s in spacing[:2]]
    i0, i1 = max(0, int(ci) - r_out[0]), min(hu.shape[0], int(ci) + r_out[0] + 1)
    j0, j1 = max(0, int(cj) - r_out[1]), min(hu.shape[1], int(cj) + r_out[1] + 1)
    plane = hu[i0:i1, j0:j1, k].astype(np.float32)
    di = (np.arange(i0, i1) - ci)[:, None] * spacing[0]
    dj = (np.arange(j0, j1) - cj)[None, :] * spacing[1]
    r = np.sqrt(di * di + dj * dj)
    ring = (r >= STREAK_RING_MM[0]) & (r <= STREAK_RING_MM[1])
    box = (slice(i0, i1), slice(j0, j1), slice(k, k + 1))
    lung = context.crop(context.lung, box)[:, :, 0]
    body = context.crop(context.body, box)[:, :, 0]
    ring &= body & ~lung & (plane > -900)  # soft tissue and bone, not air or lung
    n = int(np.count_nonzero(ring))
    if n < 20:
        return 0.0
    return float(np.count_nonzero(plane[ring] < STREAK_DARK_HU)) / n


def _extents_mm(
    points_mm: np.ndarray, voxel_mm: float, third: bool = False
) -> tuple[float, float, float]:
    """Extent along the first, second and third principal axes (plus one voxel).

    Without ``third`` the third value is the second axis' extent (the width); with it, the
    third axis' extent."""
    if len(points_mm) < 2:
        return voxel_mm, voxel_mm, voxel_mm
    centred = points_mm - points_mm.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ axes.T
    spans = projected.max(axis=0) - projected.min(axis=0) + voxel_mm
    spans = np.concatenate([spans, [voxel_mm, voxel_mm]])
    if third:
        return float(spans[0]), float(spans[1]), float(spans[2])
    return float(spans[0]), float(spans[1]), float(spans[1])


def _point(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
