"""The heart (soft-tissue/contrast mass between the lungs) and its right-heart region, work grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cementscan.anatomy.body import fill_holes_axial
from cementscan.anatomy.grid import WorkGrid

# --- thresholds (HU on the 2 mm work grid) ---
SOFT_TISSUE_HU = 0  # myocardium and unenhanced blood (~40); excludes epicardial fat (~-100)
MAX_HEART_HU = 1500  # dense contrast in the right heart stays below; metal (leads, valves) above
ENHANCED_BLOOD_HU = 150  # contrast-enhanced blood pool; unenhanced blood is ~40
ENHANCED_HEART_HU = 110  # CTA: heart voxels >= this (median 327 on chest-cta, 5th pct 79),
# liver <= ~95 (95th pct on chest-cta): this splits heart from liver when the blood is enhanced
MIN_ENHANCED_FRACTION = 0.5  # share of the candidate core at ENHANCED_BLOOD_HU or more for "CTA"

# --- shape ---
CORE_RADIUS_MM = 14.0  # an opening of this radius cuts the heart from the aorta, SVC, spine and
# liver where they meet it through necks; 16-18 mm also eroded the (small) heart of chest-cta
SEPTUM_CLOSING_MM = 4.0  # CTA: closes the (less enhanced) septa and valve planes between chambers
EDGE_GROWTH_MM = 4.0  # final growth into soft tissue: rounded-off corners and myocardium
BASE_REACH_MM = 4.0  # the heart reaches a little below the medial lung bases (chest-cta: ~4 mm;
# more let the liver and IVC in)  # the heart extends about this far below the medial lung bases
MIN_HEART_ML = 100.0  # smaller masses between the lungs are not a (covered) heart
# With only lung tips in the scan (the top of an abdominal CT: 40-70 ml each on
# abdomen-native-3mm) whatever lies between them is liver and diaphragm, not a heart that could be
# judged; the portal-venous abdomen, which does reach the heart, has ~1 l per lung.
MIN_LUNG_ML_FOR_HEART = 250.0
# At the dome of the right hemidiaphragm the lung base is a crescent around the liver: its hull
# encloses more than the lung itself (synthetic torso: 1.7-13x at the dome); above the dome the
# hull adds only the hollow of the lung's medial surface, where the right atrium lies
# (0.02-0.18x of the lung's area).
DOME_ENCLOSED_RATIO = 0.5

# --- the ascending aorta (removed from the heart mask) ---
# The aortic root and ascending aorta (26-38 mm wide in adults; chest-cta label: equivalent radius
# 15-19.7 mm) rise from the middle of the heart's upper part and are as wide as the opening ball,
# so the opening keeps them. Above the heart the ascending aorta is the widest round tube between
# the lungs (pulmonary trunk ~25 mm, SVC ~20 mm wide); it is found there and followed down
# slice by slice as the largest inscribed circle near its last centre, for as long as that
# circle keeps its width: the thin wall (aortic wall and fat, darker than lumen and chambers)
# bounds the circle where the root is embedded in the atria and the outflow tract, and at the
# valve, where the lumen opens into the left ventricle, the circle narrows (contrast) or, with
# no wall visible (non-contrast blood and myocardium are alike), widens: the tracking stops.
AORTA_RADIUS_MM = (10.0, 25.0)  # inscribed radius accepted for the seed
TUBE_AREA_RATIO = 1.6  # a round section: area <= this x pi r^2 of its inscribed circle
# (chest-cta ascending aorta above the heart: 1.05-1.5; where it touches a neighbour: 3-14)
SEED_ABOVE_MM = 20.0  # the seed is looked for on the slices up to this far above the heart mask
# (strictly above it: the rounded top of a heart without great vessels, as on the synthetic
# phantom, is a round section too)
TRACK_WINDOW_MM = 8.0  # the next slice's circle centre lies within this of the last (the root
# bends toward the left ventricle and the peak jitters in the three-lobed sinus; chest-cta gives
# the same result with 6-10 mm, 12 mm let it stray)
TRACK_NARROWER = 0.8  # stop when the circle is narrower than this x the seed's radius
# (chest-cta: 0.87 at the narrowest root slice, 0.74 at the valve)
TRACK_WIDER = 1.2  # ... or wider than this x it (merged into a chamber with no wall seen;
# chest-cta: root up to 1.09; the left ventricle, were the valve passed, 1.19-1.27. With both
# bounds, any TRACK_NARROWER in 0.7-0.85 keeps chest-cta's heart Dice >= 0.82)
AORTIC_WALL_MM = 4.0  # removed: the circle plus this margin (wall, partial volume on 2 mm voxels,
# sinus of Valsalva bulging beyond the inscribed circle: chest-cta label up to 4 mm beyond it)

# --- right heart prior ---
# The right heart (RA + RV) lies to the patient's right and anterior of the left heart: the
# interatrial/interventricular septum runs roughly at 45 degrees in the axial plane, so the
# right heart is approximated by the heart voxels on the right-anterior side of the plane through
# the heart's centroid with normal (+x, +y)/sqrt(2) (toward left-posterior). Chambers cannot be
# separated reliably without contrast (and often not with it), hence a geometric prior.
# Above the aortic valve (the lowest slice of the tracked aortic root) that half wraps around the
# root: the right atrium on its right, the right ventricular outflow tract and pulmonary trunk in
# front of it and to its left. Its centroid then falls into the root itself (chest-cta: in the
# labelled aorta, 5-7 mm outside the heart), so above the valve only the part right of the
# ascending aorta (the right atrium up to the SVC) is kept; the outflow tract there stays heart.
SEPTUM_NORMAL = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
# Bone is no blood pool: at 5 mm slices a (native) vertebral body averages to ~340 HU, as bright
# as enhanced blood, and would send a native scan down the contrast branch. The spine's masks,
# widened for the cortex's partial volume, are kept out of the blood-pool test.
BONE_MARGIN_MM = 4.0

# --- right atrium at the SVC inflow (undiluted contrast) ---
# Contrast injected into an arm vein reaches the right atrium undiluted through the SVC and mixes
# there with the unopacified IVC return; by the right ventricle it is far below cement. So when
# an SVC-side vein holds undiluted contrast only the atrium near the SVC inflow is not
# assessable. Geometric proxy (no chamber segmentation): the right-heart region's right-posterior
# half (the atrium lies right of and behind the right ventricle: split by the plane through its
# centroid with this normal) within INFLOW_REACH_MM of the SVC mask (an adult right atrium is
# ~50 mm across; chest-cta: 70% of the >= 700 HU voxels of the right-heart region lie there).
ATRIUM_NORMAL = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)
INFLOW_REACH_MM = 50.0
INFLOW_VEINS = ("svc", "brachiocephalic_vein_right", "brachiocephalic_vein_left")
RIGHT_ATRIUM = "right_atrium"  # the region's name in the not-assessable list


def _ball(radius_vox: int) -> np.ndarray:
    r = max(int(radius_vox), 1)
    grid = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return np.sum(grid**2, axis=0) <= r * r + 0.5


def _between_lungs(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Voxels with right lung at smaller x and left lung at larger x in the same (y, z) row."""
    right_before = np.maximum.accumulate(right, axis=0)
    left_after = np.maximum.accumulate(left[::-1], axis=0)[::-1]
    return right_before & left_after & ~right & ~left


def _enclosed_by_right_lung(right: np.ndarray) -> np.ndarray:
    """Per axial slice where the right lung is a crescent (DOME_ENCLOSED_RATIO), what it
    encloses (its slice-wise x-y hull).

    At the dome, the right lung base wraps around the top of the liver; the heart lies medial
    to the right lung, not inside its crescent. Used only without contrast, where the liver and
    the heart have the same density.
    """
    from skimage.morphology import convex_hull_image

    out = np.zeros(right.shape, bool)
    for k in np.nonzero(right.any(axis=(0, 1)))[0]:
        enclosed = convex_hull_image(right[:, :, k]) & ~right[:, :, k]
        # Only a crescent wraps around something: at the dome the lung is a thin rim around
        # the liver; above it the hull adds only the sliver where the right atrium bulges
        # into the lung's medial surface, which is heart and stays.
        if enclosed.sum() >= DOME_ENCLOSED_RATIO * right[:, :, k].sum():
            out[:, :, k] = enclosed
    return out


def _opened_component(candidates: np.ndarray, radius_vox: float) -> np.ndarray:
    """The largest part of ``candidates`` that a ball of ``radius_vox`` sweeps (a morphological
    opening restricted to one component): necks narrower than the ball are cut. Distance
    transforms on the cropped 2 mm grid are much faster than morphology with a large ball."""
    if not candidates.any():
        return np.zeros(candidates.shape, bool)
    core = ndimage.distance_transform_edt(candidates) > radius_vox
    labels, count = ndimage.label(core)
    if count == 0:
        return np.zeros(candidates.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    core = labels == int(np.argmax(sizes))
    # Grow the core back by the radius, computing distances only around it.
    found = ndimage.find_objects(core.astype(np.uint8))[0]
    assert found is not None
    margin = int(np.ceil(radius_vox)) + 1
    box = tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(found, core.shape, strict=True)
    )
    out = np.zeros(candidates.shape, bool)
    out[box] = (ndimage.distance_transform_edt(~core[box]) <= radius_vox) & candidates[box]
    return out


def _round_tube_seed(
    heart: np.ndarray, lumen: np.ndarray, spacing: float
) -> tuple[float, int, tuple[int, int]] | None:
    """The widest round lumen section (inscribed radius, slice, centre) on the slices just above
    the heart whose centre projects onto the heart: the ascending aorta (see AORTA_RADIUS_MM)."""
    ks = np.flatnonzero(heart.any(axis=(0, 1)))
    if len(ks) == 0:
        return None
    top = int(ks[-1])
    footprint = np.asarray(heart.any(axis=2))
    lo = top + 1
    hi = min(top + int(round(SEED_ABOVE_MM / spacing)), heart.shape[2] - 1)
    r_min, r_max = (r / spacing for r in AORTA_RADIUS_MM)
    best: tuple[float, int, tuple[int, int]] | None = None
    for k in range(lo, hi + 1):
        section = lumen[:, :, k]
        labels, count = ndimage.label(section)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel())
        dist: np.ndarray | None = None
        for index, found in enumerate(ndimage.find_objects(labels), start=1):
            if found is None or areas[index] < np.pi * r_min**2:
                continue  # too small to hold the circle
            if dist is None:
                dist = ndimage.distance_transform_edt(section)
            part = np.where(labels[found] == index, dist[found], 0.0)
            peak = np.unravel_index(int(np.argmax(part)), part.shape)
            radius = float(part[peak])
            pos = (found[0].start + int(peak[0]), found[1].start + int(peak[1]))
            if not r_min <= radius <= r_max or areas[index] > TUBE_AREA_RATIO * np.pi * radius**2:
                continue
            if footprint[pos] and (best is None or radius > best[0]):
                best = (radius, k, pos)
    return best


def _track_ascending_aorta(
    heart: np.ndarray, lumen: np.ndarray, spacing: float
) -> dict[int, tuple[tuple[int, int], float]]:
    """The ascending aorta and aortic root as {slice: (centre, inscribed radius)} (voxels) on
    the slices where it can overlap the heart mask; {} when no round tube rises from the heart.

    ``lumen`` is the blood-pool mask (contrast-enhanced where there is contrast, soft tissue
    otherwise). A shape-and-continuity tracker (see the constants), not a segmentation: it
    follows the largest inscribed circle down from above the heart while its width holds.
    """
    seed = _round_tube_seed(heart, lumen, spacing)
    if seed is None:
        return {}
    r0, k0, c0 = seed
    ks = np.flatnonzero(heart.any(axis=(0, 1)))
    bottom = int(ks[0])
    nx, ny, _ = heart.shape
    xx, yy = np.ogrid[:nx, :ny]
    window = TRACK_WINDOW_MM / spacing
    track = {k0: (c0, r0)}
    centre = c0
    for k in range(k0 - 1, bottom - 1, -1):
        near = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= window**2
        dist = np.where(near, ndimage.distance_transform_edt(lumen[:, :, k]), 0.0)
        found = np.unravel_index(int(np.argmax(dist)), dist.shape)
        radius = float(dist[found])
        if not TRACK_NARROWER * r0 <= radius <= TRACK_WIDER * r0:
            break
        centre = (int(found[0]), int(found[1]))
        track[k] = (centre, radius)
    return track


def _discs(
    shape: tuple[int, ...], track: dict[int, tuple[tuple[int, int], float]], margin: float
) -> np.ndarray:
    """The tracked circles, each widened by ``margin`` voxels, as a mask."""
    out = np.zeros(shape, bool)
    xx, yy = np.ogrid[: shape[0], : shape[1]]
    for k, (centre, radius) in track.items():
        out[:, :, k] = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= (radius + margin) ** 2
    return out


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _right_heart(heart: np.ndarray, track: dict[int, tuple[tuple[int, int], float]]) -> np.ndarray:
    """The right-heart prior (see SEPTUM_NORMAL): the heart's right-anterior half, above the
    aortic valve only its part right of the tracked ascending aorta. Always inside ``heart``."""
    points = np.argwhere(heart)
    centre = points.mean(axis=0)
    keep = (points - centre) @ SEPTUM_NORMAL < 0
    if track:
        valve, top = min(track), max(track)
        # x of the aorta's right edge per slice; held beyond the track's top
        edge = np.full(heart.shape[2], np.inf)
        for k, (aorta_centre, radius) in track.items():
            edge[k] = aorta_centre[0] - radius
        edge[top + 1 :] = edge[top]
        ks = points[:, 2]
        keep &= (ks <= valve) | (points[:, 0] < edge[ks])
    out = np.zeros(heart.shape, bool)
    out[tuple(points[keep].T)] = True
    return out


def find_heart(
    grid: WorkGrid,
    body: np.ndarray,
    lung_masks: dict[str, np.ndarray],
    bone: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Heart and right-heart masks on the work grid; {} when the scan does not cover a heart.

    The heart is the largest thick soft-tissue/contrast mass lying between the two lungs (right
    lung at smaller x, left lung at larger x in the same row) inside the body: an opening with a
    14 mm ball cuts it from the aorta, SVC, spine and liver where they meet it through necks.
    The ascending aorta and its root, as wide as the ball, are then cut out along a track of
    round sections followed down from above the heart (see AORTA_RADIUS_MM: a shape prior; a
    scan ending at the heart's top, or a root with no visible wall, keeps the root).
    Where the blood pool is contrast-enhanced (>= 150 HU in most of it), the heart/liver
    boundary is the density step between them; without contrast the liver dome is excluded as
    the region the right lung base's crescent encloses (a geometric prior: less exact).
    "right_heart" is the heart's right-anterior half, above the aortic valve only the part right
    of the ascending aorta (see SEPTUM_NORMAL): a geometric prior, not a segmentation of the
    right atrium and ventricle; it always lies inside "heart". ``bone`` (the spine's masks) is
    kept out of the blood-pool test (BONE_MARGIN_MM).
    """
    right = lung_masks.get("lung_right")
    left = lung_masks.get("lung_left")
    if right is None or left is None or not right.any() or not left.any():
        return {}
    spacing = grid.spacing_mm
    voxel_ml = spacing**3 / 1000.0
    if min(int(right.sum()), int(left.sum())) * voxel_ml < MIN_LUNG_ML_FOR_HEART:
        return {}
    # The heart's inferior wall sits below the medial lung bases: take the lungs of the slices up
    # to BASE_REACH_MM above as well when deciding what lies between them.
    reach = max(int(round(BASE_REACH_MM / spacing)), 0)
    # window [k, k + reach]: each slice also sees the lungs up to ``reach`` slices above it
    window = {"size": reach + 1, "axis": 2, "origin": -((reach + 1) // 2)}
    right_reach = ndimage.maximum_filter1d(right, **window)
    left_reach = ndimage.maximum_filter1d(left, **window)
    between = _between_lungs(right_reach, left_reach) & body & ~right & ~left
    zs = np.nonzero(between.any(axis=(0, 1)))[0]
    if len(zs) == 0:
        return {}
    # Crop to the region between the lungs (fast morphology), with room for the opening.
    pad = int(np.ceil(CORE_RADIUS_MM / spacing)) + 2
    found = ndimage.find_objects(between.astype(np.uint8))[0]
    assert found is not None
    box = tuple(
        slice(max(s.start - pad, 0), min(s.stop + pad, n))
        for s, n in zip(found, grid.shape, strict=True)
    )
    hu = grid.hu[box]
    region = between[box]
    off_bone = np.ones(hu.shape, bool)
    if bone is not None and bone[box].any():
        margin = max(int(round(BONE_MARGIN_MM / spacing)), 1)
        off_bone = ~ndimage.binary_dilation(bone[box], iterations=margin)
    # Denser than any blood pool, off the spine: cement, a lead or a calcified valve in or on the
    # heart. It takes part in the heart's shape (an opening would otherwise cut a notch around
    # cement at the heart's border, where right-atrial cement lies, and leave it outside).
    dense = region & (hu > MAX_HEART_HU) & off_bone
    soft = region & (hu >= SOFT_TISSUE_HU) & (hu <= MAX_HEART_HU)
    radius = CORE_RADIUS_MM / spacing

    enhanced = region & (hu >= ENHANCED_BLOOD_HU) & (hu <= MAX_HEART_HU) & off_bone
    pool = _opened_component(enhanced, radius)
    if pool.sum() and np.mean(hu[pool] >= ENHANCED_BLOOD_HU) >= MIN_ENHANCED_FRACTION:
        bright = region & (hu >= ENHANCED_HEART_HU) & (hu <= MAX_HEART_HU)
        lumen = bright
        closing = max(int(round(SEPTUM_CLOSING_MM / spacing)), 1)
        bright = ndimage.binary_closing(bright | dense, structure=_ball(closing)) & region
        heart = _opened_component(bright, radius)
    else:
        lumen = soft
        heart = _opened_component((soft | dense) & ~_enclosed_by_right_lung(right[box]), radius)
    grow = max(int(round(EDGE_GROWTH_MM / spacing)), 1)
    heart = ndimage.binary_dilation(heart, iterations=grow, mask=soft | dense) | heart
    track = _track_ascending_aorta(heart, lumen, spacing)
    heart = _largest_component(heart & ~_discs(heart.shape, track, AORTIC_WALL_MM / spacing))
    # What the heart encloses is in it: cement, a lead or a calcified valve denser than
    # MAX_HEART_HU leaves a hole in the soft-tissue mask (intracardiac cement must be named so).
    heart = fill_holes_axial(heart)
    if heart.sum() * spacing**3 / 1000.0 < MIN_HEART_ML:
        return {}

    full = np.zeros(grid.shape, bool)
    full[box] = heart
    right_heart = np.zeros(grid.shape, bool)
    right_heart[box] = _right_heart(heart, track)
    return {"heart": full, "right_heart": right_heart}


def contrast_hidden_regions(
    dense_veins: tuple[str, ...], masks: dict[str, np.ndarray]
) -> tuple[str, ...]:
    """The regions where undiluted contrast hides cement: ``dense_veins`` (measured by
    anatomy/contrast.py) plus RIGHT_ATRIUM when one of them is an SVC-side vein and a right heart
    was found. The one source both the detector (cement/lookalikes.py) and the summary use."""
    right_heart = masks.get("right_heart")
    hidden = any(vein in dense_veins for vein in INFLOW_VEINS)
    if hidden and right_heart is not None and right_heart.any():
        return (*dense_veins, RIGHT_ATRIUM)
    return tuple(dense_veins)


def atrium_inflow(masks: dict[str, np.ndarray], spacing_mm: float) -> np.ndarray:
    """The right atrium near the SVC inflow (see ATRIUM_NORMAL): the right-heart region's
    right-posterior half, within INFLOW_REACH_MM of the SVC mask where there is one."""
    right_heart = masks.get("right_heart")
    out = np.zeros(next(iter(masks.values())).shape, bool)
    if right_heart is None or not right_heart.any():
        return out
    points = np.argwhere(right_heart)
    keep = (points - points.mean(axis=0)) @ ATRIUM_NORMAL < 0
    svc = masks.get("svc")
    if svc is not None and svc.any():
        reach = int(np.ceil(INFLOW_REACH_MM / spacing_mm))
        low = np.maximum(points.min(axis=0) - reach, 0)
        high = np.minimum(points.max(axis=0) + 1 + reach, svc.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
        if svc[box].any():
            distance_mm = ndimage.distance_transform_edt(~svc[box]) * spacing_mm
            keep &= distance_mm[tuple((points - low).T)] <= INFLOW_REACH_MM
    out[tuple(points[keep].T)] = True
    return out
