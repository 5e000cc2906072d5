"""Lungs (right/left, filled), their airways and pulmonary vessels, hila and zones on the work grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cementscan.anatomy.body import largest_component
from cementscan.anatomy.grid import WorkGrid, labels_to_volume
from cementscan.anatomy.model import LungInfo
from cementscan.io.volume import CTVolume

# --- thresholds (HU on the 2 mm work grid, i.e. after block averaging) ---
AIR_HU = -500  # halfway between aerated lung (~-850) and soft tissue (~40): the lung/wall edge
PURE_GAS_HU = -950  # gas without tissue: airway lumen, bowel gas, air outside the patient
VESSEL_HU = -400  # 2 mm voxels a vessel fills at least halfway; unenhanced blood is ~40 HU
HILAR_VESSEL_HU = -100  # the hilar arteries/veins/bronchial walls: fully soft tissue or denser
BONE_HU = 300  # ribs and spine, excluded from the hilum search

# --- lung candidates ---
# Aerated lung averages -700..-880 HU on 2 mm voxels and almost none of it is pure gas, whereas
# bowel gas and the lumen of the airways are 40-60 % pure gas (measured on the shared data).
MAX_LUNG_GAS_FRACTION = 0.25
MAX_LARGE_LUNG_GAS_FRACTION = 0.5  # emphysema raises it; a large component is lung anyway
LARGE_LUNG_ML = 100.0  # a component this big inside the chest is lung whatever touches it
MIN_LUNG_BASE_ML = 3.0  # smaller lung bits at the top of an abdominal scan are not worth a mask
MIN_SPLIT_FRACTION = 0.1  # when splitting a merged left+right component, the smaller part's share

# --- airways: small gas-filled cross-sections near the midline (trachea, main bronchi) ---
AIRWAY_MAX_AREA_MM2 = 700.0  # trachea ~250-400 mm2, main bronchi ~150 mm2; obliquely cut ~2x
AIRWAY_MAX_OFFSET_MM = 40.0  # the main bronchi reach ~40 mm from the midline before the hila
TRACHEA_MAX_OFFSET_MM = 25.0  # the trachea itself stays within this of the body's midline
AIRWAY_MIN_GAS_FRACTION = 0.3  # the lumen is mostly pure gas; a small lung apex cut is not

# --- filling the lung (vessels, bronchi and nodules inside it) ---
FILL_CLOSING_MM = 6.0  # closes the vessel/bronchus notches at the hilum and along fissures

# --- hilum and central/peripheral ---
HILUM_SHELL_MM = 6.0  # look for hilar vessels up to this far outside the filled lung
HILUM_OPENING_MM = 4.0  # keep structures >= ~10 mm thick (lobar vessels and larger)
HILUM_Z_BAND = (0.35, 0.8)  # the hila lie in this part of the lung's height (caudal=0)
CENTRAL_RADIUS_MM = 35.0  # lobar arteries reach ~2-4 cm from the hilum (UNCONFIRMED cut-off)
REFERENCE_LUNG_ML = 2500.0  # adult lung the radius above refers to
MEDIAL_DISCOUNT = 0.5  # displacement toward the mediastinum counts half: the trunk is central

LUNG_LABELS = {"lung_right": 1, "lung_left": 2}


@dataclass(frozen=True, eq=False)
class LungResult:
    """What :func:`find_lungs` found: work-grid masks ([x, y, z] booleans) and one LungInfo per lung.

    ``masks`` holds "lung_right" and "lung_left" (each lung filled: vessels, bronchi and nodules
    inside it are included), "pulmonary_vessels" (vessel-dense voxels inside the lungs) and
    "airways" (trachea and extrapulmonary bronchi) for what was found; ``lungs`` is keyed by
    "right"/"left". A scan without lungs gives empty dicts.
    """

    masks: dict[str, np.ndarray] = field(default_factory=dict)
    lungs: dict[str, LungInfo] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _ball(radius_vox: int) -> np.ndarray:
    r = max(int(radius_vox), 1)
    grid = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return np.sum(grid**2, axis=0) <= r * r + 0.5


def _bbox(mask: np.ndarray, margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    slices = ndimage.find_objects(mask.astype(np.uint8))[0]
    assert slices is not None
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(slices, shape, strict=True)
    )


def _midline_x(body: np.ndarray) -> np.ndarray:
    """Per axial slice, the body's centre in x (grid index); the grid centre where no body."""
    counts = body.sum(axis=(0, 1)).astype(float)
    xs = np.arange(body.shape[0], dtype=float)
    weighted = np.tensordot(xs, body.sum(axis=1).astype(float), axes=(0, 0))
    centre = np.full(body.shape[2], (body.shape[0] - 1) / 2.0)
    has = counts > 0
    centre[has] = weighted[has] / counts[has]
    return centre


def _candidate_air(grid: WorkGrid, body: np.ndarray) -> np.ndarray:
    """Gas-containing voxels that are not outside the patient.

    Inside the body mask, every gas voxel counts. Outside it, aerated lung can still be cut by
    the field of view (a mediastinal crop has no outside air): components there count only when
    they are not mostly pure gas, which air around the patient always is.
    """
    air = grid.hu < AIR_HU
    inside = air & body
    outside = air & ~body
    if outside.any():
        labels, count = ndimage.label(outside)
        if count:
            index = np.arange(1, count + 1)
            gas = ndimage.mean(grid.hu < PURE_GAS_HU, labels, index)
            keep = np.zeros(count + 1, bool)
            keep[1:] = gas < MAX_LUNG_GAS_FRACTION
            inside |= keep[labels]
    return inside


def _find_airways(air: np.ndarray, grid: WorkGrid, midline_x: np.ndarray) -> np.ndarray:
    """Trachea and main bronchi: small, mostly pure-gas cross-sections near the midline that
    connect in 3-D to a trachea-like piece. Cross-sections that merge with lung in their slice
    (the bronchi inside the hila) stay with the lung."""
    spacing = grid.spacing_mm
    gas = grid.hu < PURE_GAS_HU
    pieces = np.zeros(air.shape, bool)
    trachea_like = np.zeros(air.shape, bool)
    max_area = AIRWAY_MAX_AREA_MM2 / spacing**2
    for k in range(air.shape[2]):
        slab = air[:, :, k]
        if not slab.any():
            continue
        labels, count = ndimage.label(slab)
        index = np.arange(1, count + 1)
        areas = ndimage.sum(slab, labels, index)
        small = areas <= max_area
        if not small.any():
            continue
        gas_frac = ndimage.mean(gas[:, :, k], labels, index)
        centres = np.array(ndimage.center_of_mass(slab, labels, index)).reshape(-1, 2)
        offset_mm = np.abs(centres[:, 0] - midline_x[k]) * spacing
        airway = small & (gas_frac >= AIRWAY_MIN_GAS_FRACTION)
        lookup = np.zeros(count + 1, bool)
        lookup[1:] = airway & (offset_mm <= AIRWAY_MAX_OFFSET_MM)
        pieces[:, :, k] = lookup[labels]
        lookup[1:] = airway & (offset_mm <= TRACHEA_MAX_OFFSET_MM)
        trachea_like[:, :, k] = lookup[labels]
    if not trachea_like.any():
        return pieces & False
    labels, count = ndimage.label(pieces)
    # A trachea spans several slices; an isolated gas bubble (oesophagus) may too, and is
    # harmless to remove: it is never lung.
    slices_per = ndimage.sum(trachea_like, labels, np.arange(1, count + 1))
    keep = np.zeros(count + 1, bool)
    keep[1:] = slices_per >= 3
    return keep[labels]


def _split_left_right(component: np.ndarray) -> list[np.ndarray]:
    """Split one component holding both lungs (touching at the anterior/posterior junction
    lines) by eroding until two large parts appear and growing them back inside the original."""
    total = component.sum()
    box = _bbox(component, 2, component.shape)
    sub = component[box]
    eroded = sub
    for _ in range(8):
        eroded = ndimage.binary_erosion(eroded)
        labels, count = ndimage.label(eroded)
        if count < 2:
            continue
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        order = np.argsort(sizes)[::-1]
        if sizes[order[1]] >= MIN_SPLIT_FRACTION * sizes[order[0]]:
            seeds = np.zeros(sub.shape, np.uint8)
            seeds[labels == order[0]] = 1
            seeds[labels == order[1]] = 2
            grown = _grow_labels(seeds, sub)
            out = []
            for value in (1, 2):
                part = np.zeros(component.shape, bool)
                part[box] = grown == value
                out.append(part)
            return out
    del total
    return [component]


def _grow_labels(seeds: np.ndarray, within: np.ndarray, max_iter: int = 30) -> np.ndarray:
    """Grow labelled seeds inside ``within`` one voxel per step; ties go to the smaller label."""
    labels = seeds.copy()
    for _ in range(max_iter):
        free = within & (labels == 0)
        if not free.any():
            break
        grown = ndimage.grey_dilation(labels, size=(3, 3, 3))
        # grey dilation takes the larger label; where two fronts meet that only moves the
        # boundary by one voxel, which is within the work grid's resolution.
        new = free & (grown > 0)
        if not new.any():
            break
        labels[new] = grown[new]
    return labels


def _fill_lung(lung: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Include the vessels, bronchi and nodules inside the lung: close the notches where they
    enter, then fill what the lung encloses slice by slice and in 3-D."""
    radius = max(int(round(FILL_CLOSING_MM / spacing_mm)), 1)
    box = _bbox(lung, radius + 1, lung.shape)
    sub = lung[box]
    closed = ndimage.binary_closing(sub, structure=_ball(radius)) | sub
    filled = closed.copy()
    for k in range(filled.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(filled[:, :, k])
    filled = ndimage.binary_fill_holes(filled)
    out = np.zeros(lung.shape, bool)
    out[box] = filled
    return out


def find_lungs(grid: WorkGrid, body: np.ndarray, volume: CTVolume | None = None) -> LungResult:
    """Find the lungs on the work grid.

    Gas components inside the patient that look like aerated lung (few pure-gas voxels, or large)
    and are not airways become lungs; a component holding both lungs is split; sides come from
    the component's x relative to the body's midline (right lung = smaller LPS x). Each lung is
    closed and hole-filled so that it includes its vessels.

    Dense lung (basal atelectasis, consolidation) and pleural effusion are NOT aerated: they are
    included only where the filling reaches them (pockets enclosed by aerated lung and ~6 mm
    notches); a dependent consolidated band along the diaphragm or posterior chest wall stays
    outside the lung masks. Callers that place emboli should therefore test a point's distance to
    the lung, not only membership. ``volume`` is accepted for a later native-resolution
    refinement and is not used yet.
    """
    del volume
    air = _candidate_air(grid, body)
    if not air.any():
        return LungResult()
    midline = _midline_x(body)
    airways = _find_airways(air, grid, midline)
    lung_air = air & ~airways
    labels, count = ndimage.label(lung_air)
    if count == 0:
        return LungResult()
    index = np.arange(1, count + 1)
    voxel_ml = grid.spacing_mm**3 / 1000.0
    sizes_ml = ndimage.sum(lung_air, labels, index) * voxel_ml
    gas_frac = ndimage.mean(grid.hu < PURE_GAS_HU, labels, index)
    top = lung_air.shape[2] - 1
    touches_top = ndimage.maximum(
        np.broadcast_to(np.arange(lung_air.shape[2]), lung_air.shape), labels, index
    )
    accepted: list[np.ndarray] = []
    for i in range(count):
        large = sizes_ml[i] >= LARGE_LUNG_ML and gas_frac[i] < MAX_LARGE_LUNG_GAS_FRACTION
        base = (
            sizes_ml[i] >= MIN_LUNG_BASE_ML
            and gas_frac[i] < MAX_LUNG_GAS_FRACTION
            and touches_top[i] >= top - 1
        )
        if large or base:
            component = labels == i + 1
            accepted.extend(_split_if_bilateral(component, midline, grid.spacing_mm))
    if not accepted:
        return LungResult()

    sides: dict[str, np.ndarray] = {}
    for part in accepted:
        xs, _, zs = np.nonzero(part)
        side = "right" if np.mean(xs - midline[zs]) < 0 else "left"
        sides[side] = sides[side] | part if side in sides else part

    masks: dict[str, np.ndarray] = {}
    filled: dict[str, np.ndarray] = {}
    for side, part in sides.items():
        filled[side] = _fill_lung(part, grid.spacing_mm)
    if "right" in filled and "left" in filled:
        # Filling may close across a junction line; the overlap goes to neither side's
        # aerated voxels, so give it back by the aerated masks.
        both = filled["right"] & filled["left"]
        filled["right"] &= ~(both & ~sides["right"])
        filled["left"] &= ~(both & ~sides["left"]) & ~filled["right"]
    for side in ("right", "left"):
        if side in filled:
            masks[f"lung_{side}"] = filled[side]
    any_lung = np.zeros(grid.shape, bool)
    for mask in filled.values():
        any_lung |= mask
    masks["pulmonary_vessels"] = any_lung & (grid.hu >= VESSEL_HU)
    if airways.any():
        masks["airways"] = airways

    infos = {side: _lung_info(side, filled[side], grid) for side in filled}
    return LungResult(masks=masks, lungs=infos)


def _split_if_bilateral(
    component: np.ndarray, midline: np.ndarray, spacing_mm: float
) -> list[np.ndarray]:
    """Split a component with substantial mass on both sides of the midline."""
    xs, _, zs = np.nonzero(component)
    offset = xs - midline[zs]
    right, left = np.sum(offset < -10 / spacing_mm), np.sum(offset > 10 / spacing_mm)
    if min(right, left) < MIN_SPLIT_FRACTION * max(right, left, 1):
        return [component]
    return _split_left_right(component)


def _lung_info(side: str, lung: np.ndarray, grid: WorkGrid) -> LungInfo:
    zs = np.nonzero(lung.any(axis=(0, 1)))[0]
    z_low, z_high = float(grid.z_mm(int(zs[0]))), float(grid.z_mm(int(zs[-1])))
    return LungInfo(
        side=side,
        volume_ml=float(lung.sum()) * grid.spacing_mm**3 / 1000.0,
        z_range_mm=(z_low, z_high),
        hilum_lps_mm=_hilum(lung, grid),
        # The lung reaches the grid's first/last slice: part of it may lie beyond the scan.
        apex_covered=bool(zs[-1] < lung.shape[2] - 1),
        base_covered=bool(zs[0] > 0),
    )


def _hilum(lung: np.ndarray, grid: WorkGrid) -> tuple[float, float, float] | None:
    """Centre of the thick soft-tissue structures (lobar vessels, main bronchus walls) in and
    just outside the lung's medial surface, in the middle-to-upper part of its height."""
    spacing = grid.spacing_mm
    shell = max(int(round(HILUM_SHELL_MM / spacing)), 1)
    box = _bbox(lung, shell + 1, lung.shape)
    sub = lung[box]
    hu = grid.hu[box]
    near = ndimage.binary_dilation(sub, structure=_ball(shell))
    dense = near & (hu >= HILAR_VESSEL_HU) & (hu < BONE_HU)
    zs = np.nonzero(sub.any(axis=(0, 1)))[0]
    low = zs[0] + HILUM_Z_BAND[0] * (zs[-1] - zs[0])
    high = zs[0] + HILUM_Z_BAND[1] * (zs[-1] - zs[0])
    k = np.arange(sub.shape[2])
    dense[:, :, (k < low) | (k > high)] = False
    thick = ndimage.binary_opening(
        dense, structure=_ball(max(int(round(HILUM_OPENING_MM / spacing)), 1))
    )
    # Only thick structures the lung wraps around (the hilum) count, not the heart or chest wall
    # it merely touches: keep those whose voxels mostly lie inside the filled lung.
    labels, count = ndimage.label(thick)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    inside = ndimage.mean(sub, labels, index)
    sizes = ndimage.sum(thick, labels, index)
    keep = inside >= 0.5
    if not keep.any():
        return None
    best = index[keep][np.argmax(sizes[keep])]
    centre = np.array(ndimage.center_of_mass(labels == best))
    offset = np.array([s.start for s in box], float)
    return tuple(float(v) for v in grid.to_lps(centre + offset))  # type: ignore[return-value]


def is_central(
    lps_mm: np.ndarray,
    lung: LungInfo,
    radius_mm: float = CENTRAL_RADIUS_MM,
    midline_x_mm: float | None = None,
) -> np.ndarray:
    """Whether points (n, 3) in LPS mm lie in the central (lobar-and-more-proximal) part of
    ``lung``'s arterial tree rather than the peripheral (segmental and beyond) part.

    Rule: a point is central when its distance to the hilum is at most ``radius_mm`` scaled by
    the cube root of the lung's volume relative to a 2.5 l adult lung (only when the whole lung
    is in the scan; otherwise unscaled), where displacement toward the mediastinum counts only
    half (so the main and lobar trunks medial to the hilum stay central). A lung without a
    hilum (e.g. a lung base at the top of an abdominal scan) has no central part.

    The anatomical cut-off itself (main/lobar vs segmental) is UNCONFIRMED in the literature
    (clinical-evidence.md §2.3); this geometric rule is a proxy, not a vessel-generation count.
    ``midline_x_mm`` (default: the hilum's side tells which way is medial) is accepted so that
    callers with a canal centreline can pass it; it is only used to orient "medial".
    """
    points = np.atleast_2d(np.asarray(lps_mm, dtype=float))
    if lung.hilum_lps_mm is None:
        return np.zeros(len(points), bool)
    hilum = np.asarray(lung.hilum_lps_mm, float)
    scale = 1.0
    if lung.fully_covered and lung.volume_ml > 0:
        scale = float(np.cbrt(lung.volume_ml / REFERENCE_LUNG_ML))
    delta = points - hilum
    # Medial is +x for the right lung (toward the patient's left) and -x for the left lung.
    medial_sign = 1.0 if lung.side == "right" else -1.0
    if midline_x_mm is not None:
        medial_sign = 1.0 if midline_x_mm > hilum[0] else -1.0
    medial = delta[:, 0] * medial_sign > 0
    delta[medial, 0] *= MEDIAL_DISCOUNT
    return np.linalg.norm(delta, axis=1) <= radius_mm * scale


def lung_labels_native(result: LungResult, grid: WorkGrid, volume: CTVolume) -> np.ndarray:
    """The lungs as a label map on the CT's own [i, j, k] grid (1 right, 2 left, 0 elsewhere)."""
    labels = np.zeros(grid.shape, np.uint8)
    for name, value in LUNG_LABELS.items():
        mask = result.masks.get(name)
        if mask is not None:
            labels[mask] = value
    return labels_to_volume(labels, grid, volume)


__all__ = ["LungResult", "find_lungs", "is_central", "lung_labels_native", "largest_component"]
