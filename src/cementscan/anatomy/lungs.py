"""Lungs (right/left, filled), their airways and pulmonary vessels, hila and zones on the work grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cementscan.anatomy.body import IN_PLANE, LABEL_DTYPE, fill_holes
from cementscan.anatomy.grid import WorkGrid, labels_to_volume
from cementscan.anatomy.model import LungInfo
from cementscan.io.volume import CTVolume

# --- thresholds (HU on the 2 mm work grid, i.e. after block averaging) ---
AIR_HU = -500  # halfway between aerated lung (~-850) and soft tissue (~40): the lung/wall edge
PURE_GAS_HU = -950  # gas without tissue: airway lumen, bowel gas, air outside the patient
VESSEL_HU = -400  # 2 mm voxels a vessel fills at least halfway; unenhanced blood is ~40 HU
HILAR_VESSEL_HU = -100  # 2 mm voxels fully inside a vessel (thick vessels: the hilum)

# --- lung candidates ---
# Aerated lung averages -700..-880 HU on 2 mm voxels and almost none of it is pure gas, whereas
# bowel gas and the lumen of the airways are 40-60 % pure gas (measured on the shared data).
MAX_LUNG_GAS_FRACTION = 0.25
MAX_LARGE_LUNG_GAS_FRACTION = 0.35  # emphysema raises it; colon gas (0.46 here) stays above
LARGE_LUNG_ML = 300.0  # larger than a colon gas collection (222 ml in abdomen-native-3mm)
MIN_LUNG_BASE_ML = 3.0  # smaller lung bits at the top of an abdominal scan are not worth a mask
MIN_SPLIT_FRACTION = 0.1  # when splitting a merged left+right component, the smaller part's share
MAX_SPLIT_EROSIONS = 6  # junction lines are 1-3 work voxels thick

# --- airways: small gas-filled cross-sections near the midline (trachea, main bronchi) ---
AIRWAY_MAX_AREA_MM2 = 700.0  # trachea ~250-400 mm2, main bronchi ~150 mm2; obliquely cut ~2x
AIRWAY_MAX_OFFSET_MM = 40.0  # the main bronchi reach ~40 mm from the midline before the hila
TRACHEA_MAX_OFFSET_MM = 25.0  # the trachea itself stays within this of the body's midline
AIRWAY_MIN_GAS_FRACTION = 0.3  # the lumen is mostly pure gas; a small lung apex cut is not

# --- filling the lung (vessels, bronchi and nodules inside it) ---
FILL_CLOSING_MM = 6.0  # closes the vessel/bronchus notches at the hilum and along fissures

# --- hilum and central/peripheral ---
HILUM_MIN_THICK_VESSEL_MM3 = 2000.0  # ~2 ml of >= 6 mm vessels: the hilar/lobar vessels
HILUM_MIN_SCAN_MARGIN_MM = 30.0  # a "hilum" closer than this to the scan's end is a cut lung
CENTRAL_RADIUS_MM = 35.0  # lobar arteries reach ~2-4 cm from the hilum (UNCONFIRMED cut-off)
REFERENCE_LUNG_ML = 2500.0  # adult lung the radius above refers to
MEDIAL_DISCOUNT = 0.5  # displacement toward the mediastinum counts half: the trunk is central

LUNG_LABELS = {"lung_right": 1, "lung_left": 2}
_BAND_CODE = 10  # label + this marks a voxel of the edge band in lung_labels_native


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


def _label_means(labels: np.ndarray, count: int, values: np.ndarray) -> np.ndarray:
    """Share of True ``values`` per label 1..count (np.bincount: much faster than ndimage.mean;
    the labels at the True voxels are counted, the same sums as float weights)."""
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)[1:].astype(float)
    hits = np.bincount(flat[values.ravel()], minlength=count + 1)[1:].astype(float)
    return hits / np.maximum(sizes, 1.0)


def _ball(radius_vox: int) -> np.ndarray:
    r = max(int(radius_vox), 1)
    grid = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return np.sum(grid**2, axis=0) <= r * r + 0.5


def _bbox(mask: np.ndarray, margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The bounding box of ``mask``'s voxels (it has some) grown by ``margin``, within ``shape``."""
    ends = []
    for axis in range(mask.ndim):
        along = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        ends.append((int(along[0]), int(along[-1]) + 1))
    return tuple(
        slice(max(start - margin, 0), min(stop + margin, n))
        for (start, stop), n in zip(ends, shape, strict=True)
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
        labels, count = ndimage.label(outside, output=LABEL_DTYPE)
        if count:
            gas = _label_means(labels, count, grid.hu < PURE_GAS_HU)
            keep = np.zeros(count + 1, bool)
            keep[1:] = gas < MAX_LUNG_GAS_FRACTION
            inside |= keep[labels]
    return inside


def _lung_components(air: np.ndarray, grid: WorkGrid) -> np.ndarray:
    """The gas components that hold lung (with the airways still attached to them).

    A component is lung when it is large and not mostly pure gas, or when it is a small
    aerated piece cut by the top of the scan (a lung base in an abdominal CT). Bowel gas is
    40-60 % pure gas on 2 mm voxels, aerated lung almost none.
    """
    labels, count = ndimage.label(air, output=LABEL_DTYPE)
    if count == 0:
        return np.zeros(air.shape, bool)
    voxel_ml = grid.spacing_mm**3 / 1000.0
    sizes_ml = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml
    gas_frac = _label_means(labels, count, grid.hu < PURE_GAS_HU)
    top = air.shape[2] - 1
    keep = np.zeros(count + 1, bool)
    for i, obj in enumerate(ndimage.find_objects(labels)):
        if obj is None:
            continue
        large = sizes_ml[i] >= LARGE_LUNG_ML and gas_frac[i] < MAX_LARGE_LUNG_GAS_FRACTION
        base = (
            sizes_ml[i] >= MIN_LUNG_BASE_ML
            and gas_frac[i] < MAX_LUNG_GAS_FRACTION
            and obj[2].stop - 1 >= top
        )
        keep[i + 1] = large or base
    return keep[labels]


def _find_airways(air: np.ndarray, grid: WorkGrid, midline_x: np.ndarray) -> np.ndarray:
    """Trachea and main bronchi: small, mostly pure-gas cross-sections near the midline that
    connect in 3-D to a trachea-like piece. Cross-sections that merge with lung in their slice
    (the bronchi inside the hila) stay with the lung."""
    spacing = grid.spacing_mm
    # every slice's 2-D components
    labels, count = ndimage.label(air, structure=IN_PLANE, output=LABEL_DTYPE)
    if count == 0:
        return np.zeros(air.shape, bool)
    flat = labels.ravel()
    areas_mm2 = np.bincount(flat, minlength=count + 1)[1:] * spacing**2
    gas_frac = _label_means(labels, count, grid.hu < PURE_GAS_HU)
    # Mean x per component, from the labelled voxels' flat indices (no whole-grid x array).
    inside = np.flatnonzero(flat)
    xs = (inside // (air.shape[1] * air.shape[2])).astype(np.float64)
    ids = flat[inside]
    centre_x = np.bincount(ids, weights=xs, minlength=count + 1)[1:] / np.maximum(
        np.bincount(ids, minlength=count + 1)[1:].astype(float), 1.0
    )
    objects = ndimage.find_objects(labels)
    slice_k = np.array([o[2].start if o is not None else 0 for o in objects])
    offset_mm = np.abs(centre_x - midline_x[slice_k]) * spacing
    airway = (areas_mm2 <= AIRWAY_MAX_AREA_MM2) & (gas_frac >= AIRWAY_MIN_GAS_FRACTION)
    lookup = np.zeros(count + 1, bool)
    lookup[1:] = airway & (offset_mm <= AIRWAY_MAX_OFFSET_MM)
    pieces = lookup[labels]
    lookup[1:] = airway & (offset_mm <= TRACHEA_MAX_OFFSET_MM)
    trachea_like = lookup[labels]
    if not trachea_like.any():
        return np.zeros(air.shape, bool)
    labels, count = ndimage.label(pieces)
    # A trachea spans several slices; an isolated gas bubble (oesophagus) may too, and is
    # harmless to remove: it is never lung.
    keep = np.zeros(count + 1, bool)
    for i, obj in enumerate(ndimage.find_objects(labels)):
        if obj is not None:
            sub = (labels[obj] == i + 1) & trachea_like[obj]
            keep[i + 1] = int(sub.any(axis=(0, 1)).sum()) >= 3
    return keep[labels]


def _split_left_right(component: np.ndarray) -> list[np.ndarray]:
    """Split one component holding both lungs (touching at the anterior/posterior junction
    lines) by eroding until two large parts appear and growing them back inside the original."""
    box = _bbox(component, 2, component.shape)
    sub = component[box]
    eroded = sub
    for step in range(1, MAX_SPLIT_EROSIONS + 1):
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
            grown = _grow_labels(seeds, sub, step + 2)
            out = []
            for value in (1, 2):
                part = np.zeros(component.shape, bool)
                part[box] = grown == value
                out.append(part)
            return out
    return [component]


def _grow_labels(seeds: np.ndarray, within: np.ndarray, steps: int) -> np.ndarray:
    """Grow labelled seeds inside ``within`` one voxel per step (erosion removed at most
    ``steps - 2`` layers, so that many steps give nearly every voxel back)."""
    labels = seeds.copy()
    for _ in range(steps):
        free = within & (labels == 0)
        if not free.any():
            break
        # grey dilation takes the larger label where two fronts meet: that moves the boundary
        # by at most one voxel, within the work grid's resolution.
        grown = ndimage.grey_dilation(labels, size=(3, 3, 3))
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
    filled = fill_holes(fill_holes(closed, axial_only=True))
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
    lung_air = _lung_components(air, grid)
    if not lung_air.any():
        return LungResult()
    airways = _find_airways(lung_air, grid, midline)
    lung_air &= ~airways
    labels, count = ndimage.label(lung_air, output=LABEL_DTYPE)
    accepted: list[np.ndarray] = []
    voxel_ml = grid.spacing_mm**3 / 1000.0
    sizes_ml = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml
    for i in range(count):
        # Removing the airways may leave crumbs of the bronchial tree behind.
        if sizes_ml[i] >= MIN_LUNG_BASE_ML:
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
            # Filling closes over the main bronchi where they enter; they stay airway.
            filled[side] &= ~airways
            masks[f"lung_{side}"] = filled[side]
    any_lung = np.zeros(grid.shape, bool)
    for mask in filled.values():
        any_lung |= mask
    masks["pulmonary_vessels"] = any_lung & (grid.hu >= VESSEL_HU)
    if airways.any():
        masks["airways"] = airways

    infos = {side: lung_info(side, filled[side], grid) for side in filled}
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


def lung_info(side: str, lung: np.ndarray, grid: WorkGrid) -> LungInfo:
    """Volume, cranio-caudal extent, hilum and coverage of one filled lung mask."""
    zs = np.nonzero(lung.any(axis=(0, 1)))[0]
    z_low, z_high = float(grid.z_mm(int(zs[0]))), float(grid.z_mm(int(zs[-1])))
    return LungInfo(
        side=side,
        volume_ml=float(lung.sum()) * grid.spacing_mm**3 / 1000.0,
        z_range_mm=(z_low, z_high),
        hilum_lps_mm=_hilum(lung, grid, side),
        # The lung reaches the grid's first/last slice: part of it may lie beyond the scan.
        apex_covered=bool(zs[-1] < lung.shape[2] - 1),
        base_covered=bool(zs[0] > 0),
    )


def _hilum(lung: np.ndarray, grid: WorkGrid, side: str) -> tuple[float, float, float] | None:
    """Centre of the lung's thick vessels (>= ~6 mm across: lobar and large segmental vessels,
    which only occur near the hilum) in the lung's medial half.

    Returns None when the result cannot be a hilum: too few thick vessels, or the point lies
    near the top or bottom of the scan (a lung base or apex cut by the field of view, whose
    thickest vessels are basal trunks, not the hilum).
    """
    box = _bbox(lung, 1, lung.shape)
    sub = lung[box]
    vessels = sub & (grid.hu[box] >= HILAR_VESSEL_HU)
    thick = ndimage.binary_opening(vessels, structure=_ball(1))
    xs = np.nonzero(sub)[0]
    median_x = float(np.median(xs))
    index_x = np.arange(sub.shape[0])
    # medial = toward larger x for the right lung, smaller x for the left one
    lateral = index_x < median_x if side == "right" else index_x > median_x
    thick[lateral] = False
    if thick.sum() * grid.spacing_mm**3 < HILUM_MIN_THICK_VESSEL_MM3:
        return None
    centre = np.array(np.nonzero(thick), float).mean(axis=1)
    centre += np.array([s.start for s in box], float)
    margin = HILUM_MIN_SCAN_MARGIN_MM / grid.spacing_mm
    if centre[2] < margin or centre[2] > lung.shape[2] - 1 - margin:
        return None
    return (
        float(grid.to_lps(centre)[0]),
        float(grid.to_lps(centre)[1]),
        float(grid.to_lps(centre)[2]),
    )


def is_central(
    lps_mm: np.ndarray,
    lung: LungInfo,
    radius_mm: float = CENTRAL_RADIUS_MM,
    in_lung: np.ndarray | None = None,
) -> np.ndarray:
    """Whether points (n, 3) in LPS mm lie in the central (lobar-and-more-proximal) part of
    ``lung``'s arterial tree rather than the peripheral (segmental and beyond) part.

    Rule: a point is central when its distance to the hilum is at most ``radius_mm`` scaled by
    the cube root of the lung's volume relative to a 2.5 l adult lung (scaled only when the
    whole lung is in the scan), where displacement toward the mediastinum counts only half (the
    lobar trunks run medially into the hilum). When ``in_lung`` (n,) says which points lie
    inside a lung mask, points outside the lungs and medial to the hilum (the main and the
    right/left pulmonary arteries in the mediastinum) are central too. A lung without a hilum
    (e.g. a lung base at the top of an abdominal scan) has no central part.

    The anatomical cut-off itself (main/lobar vs segmental) is UNCONFIRMED in the literature
    (clinical-evidence.md §2.3); this geometric rule is a proxy, not a count of vessel
    generations.
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
    medial = delta[:, 0] * medial_sign > 0
    delta[medial, 0] *= MEDIAL_DISCOUNT
    central = np.linalg.norm(delta, axis=1) <= radius_mm * scale
    if in_lung is not None:
        central |= medial & ~np.asarray(in_lung, bool).reshape(-1)
    return np.asarray(central)


def lung_labels_native(result: LungResult, grid: WorkGrid, volume: CTVolume) -> np.ndarray:
    """The lungs as a label map on the CT's own [i, j, k] grid (1 right, 2 left, 0 elsewhere).

    The 2 mm masks are mapped to the CT's voxels (nearest neighbour); within one work voxel of
    each lung's edge the native HU decides (aerated voxels join the lung, denser ones leave it),
    so the edge follows the CT's own resolution. Inside that band the filled lung is kept as
    is, so vessels and nodules inside the lung stay in it.
    """
    coded = np.zeros(grid.shape, np.uint8)
    for name, value in LUNG_LABELS.items():
        mask = result.masks.get(name)
        if mask is None or not mask.any():
            continue
        box = _bbox(mask, 2, mask.shape)
        sub = mask[box]
        core = ndimage.binary_erosion(sub)
        band = ndimage.binary_dilation(sub) & ~core
        view = coded[box]
        view[band & (view == 0)] = value + _BAND_CODE
        view[core] = value
    # Pad by one work voxel (edge values): the work grid can stop up to one voxel short of the
    # CT's last slice, which labels_to_volume would leave unlabelled.
    padded = np.pad(coded, 1, mode="edge")
    shifted = WorkGrid(
        hu=np.empty((0, 0, 0), np.int16),
        spacing_mm=grid.spacing_mm,
        origin_lps_mm=grid.origin_lps_mm - grid.spacing_mm,
    )
    native = labels_to_volume(padded, shifted, volume)
    banded = native > _BAND_CODE
    if banded.any():
        aerated = volume.hu[banded] < AIR_HU
        native[banded] = np.where(aerated, native[banded] - _BAND_CODE, 0)
    return native


__all__ = [
    "LungResult",
    "fill_holes",
    "find_lungs",
    "is_central",
    "lung_info",
    "lung_labels_native",
]
