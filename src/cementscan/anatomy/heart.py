"""The heart (soft-tissue/contrast mass between the lungs) and its right-heart region, work grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

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

# --- right heart prior ---
# The right heart (RA + RV) lies to the patient's right and anterior of the left heart: the
# interatrial/interventricular septum runs roughly at 45 degrees in the axial plane, so the
# right heart is approximated by the heart voxels on the right-anterior side of the plane through
# the heart's centroid with normal (+x, +y)/sqrt(2) (toward left-posterior). Chambers cannot be
# separated reliably without contrast (and often not with it), hence a geometric prior.
SEPTUM_NORMAL = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)


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
    """Per axial slice, what the right lung's crescent encloses (its slice-wise x-y hull).

    At the dome, the right lung base wraps around the top of the liver; the heart lies medial
    to the right lung, not inside its crescent. Used only without contrast, where the liver and
    the heart have the same density.
    """
    from skimage.morphology import convex_hull_image

    out = np.zeros(right.shape, bool)
    for k in np.nonzero(right.any(axis=(0, 1)))[0]:
        out[:, :, k] = convex_hull_image(right[:, :, k]) & ~right[:, :, k]
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


def find_heart(
    grid: WorkGrid, body: np.ndarray, lung_masks: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Heart and right-heart masks on the work grid; {} when the scan does not cover a heart.

    The heart is the largest thick soft-tissue/contrast mass lying between the two lungs (right
    lung at smaller x, left lung at larger x in the same row) inside the body: an opening with a
    14 mm ball cuts it from the aorta, SVC, spine and liver where they meet it through necks
    (the aortic root, as wide as the ball, partly stays: a known weakness).
    Where the blood pool is contrast-enhanced (>= 150 HU in most of it), the heart/liver
    boundary is the density step between them; without contrast the liver dome is excluded as
    the region the right lung base's crescent encloses (a geometric prior: less exact).
    "right_heart" is the heart's right-anterior half (see SEPTUM_NORMAL): a prior, not a
    segmentation of the right atrium and ventricle.
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
    soft = region & (hu >= SOFT_TISSUE_HU) & (hu <= MAX_HEART_HU)
    radius = CORE_RADIUS_MM / spacing

    enhanced = region & (hu >= ENHANCED_BLOOD_HU) & (hu <= MAX_HEART_HU)
    pool = _opened_component(enhanced, radius)
    if pool.sum() and np.mean(hu[pool] >= ENHANCED_BLOOD_HU) >= MIN_ENHANCED_FRACTION:
        bright = region & (hu >= ENHANCED_HEART_HU) & (hu <= MAX_HEART_HU)
        closing = max(int(round(SEPTUM_CLOSING_MM / spacing)), 1)
        bright = ndimage.binary_closing(bright, structure=_ball(closing)) & region
        heart = _opened_component(bright, radius)
    else:
        heart = _opened_component(soft & ~_enclosed_by_right_lung(right[box]), radius)
    grow = max(int(round(EDGE_GROWTH_MM / spacing)), 1)
    heart = ndimage.binary_dilation(heart, iterations=grow, mask=soft) | heart
    if heart.sum() * spacing**3 / 1000.0 < MIN_HEART_ML:
        return {}

    full = np.zeros(grid.shape, bool)
    full[box] = heart
    points = np.array(np.nonzero(full), float).T
    centre = points.mean(axis=0)
    right_side = (points - centre) @ SEPTUM_NORMAL < 0
    right_heart = np.zeros(grid.shape, bool)
    right_heart[tuple(points[right_side].astype(int).T)] = True
    return {"heart": full, "right_heart": right_heart}
