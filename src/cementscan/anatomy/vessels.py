"""The venous route of cement (IVC, azygos, SVC) and the aorta, found from the spine outward."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cementscan.anatomy.body import IN_PLANE, fill_holes_axial
from cementscan.anatomy.grid import WorkGrid

# --- Where to look, relative to the spinal canal's centre on the same axial slice (LPS mm).
# Basis: TotalSegmentator labels of the shared abdomen-native-3mm and chest-cta scans and
# standard cross-sectional anatomy: the IVC lies 0-28 mm right of and 40-90 mm anterior to the
# canal centre (anterior and right of the vertebral body, moving forward into the liver and
# medially toward the right atrium); the abdominal/descending aorta 5-25 mm left of it and
# 35-70 mm anterior.
IVC_PRIOR_DX_MM = (-17.0, 11.0)  # (mean, sigma) of x offset
IVC_PRIOR_DY_MM = (-64.0, 16.0)
AORTA_PRIOR_DX_MM = (16.0, 11.0)  # thoracic descending aorta: up to +35 mm
AORTA_PRIOR_DY_MM = (-52.0, 13.0)
CROP_DX_MM = (-75.0, 55.0)  # the crop holding every vessel searched for
CROP_DY_MM = (-135.0, -10.0)

# --- Image evidence.
DISK_RADIUS_MM = 5.0  # mean HU over a 10 mm disk: smaller than any lumen here (15-30 mm)
# Laplacian-of-Gaussian (x, y) scales: a round 15-30 mm lumen, and the IVC flattened front to
# back (chest-cta: 22 x 10 mm below the renal veins) -- the diaphragm's crura, as dense and as
# fat-bounded, run front to back and so do not fit the flat kernel.
BLOB_SIGMAS_MM = ((6.0, 6.0), (6.0, 3.5))
BLOB_CLIP_HU = (-150.0, 250.0)  # so that bone and dense contrast do not dominate the blob term
BLOB_FULL_SCORE = 40.0  # normalised LoG of a soft-tissue vessel in fat (measured 20-50)
BLOOD_HU = (-10.0, 200.0)  # unenhanced to portal-venous blood; wider than any venous lumen
BLOOD_SOFT_HU = 60.0  # the band's cost rises over this many HU outside it
ENHANCED_AORTA_HU = 180.0  # disk-mean above this in the aortic window: contrast in the aorta
# (unenhanced blood is 30-60 HU and a 10 mm disk averages calcified plaque away).
ARTERIAL_AORTA_HU = 280.0  # aorta this bright: arterial phase (portal-venous aortas ~150-250)
ARTERIAL_PHASE_VENOUS_HU = 110.0  # unenhanced venous blood plus renal return, arterial phase
DENSE_HU = 400.0  # disk-mean above this is contrast, cement or bone, not unenhanced blood
SPINE_BONE_HU = 200.0  # cortical shell of the vertebral body (filled: the whole body)
VERTEBRA_DY_MM = -28.0  # vertebral body centre: in front of the canal centre (T1-L5: 20-35 mm)
VERTEBRA_HALF_AXES_MM = (26.0, 19.0)  # lumbar bodies are <= 50 mm wide and ~35 mm deep
# Cement filling a vein against the body (an azygos cast right-anterolateral of the thoracic
# bodies, clinical-evidence.md §1.1 type S and §3) is as bright as bone and fuses with it: an
# in-plane opening this wide keeps the body, which is 25-50 mm across, and drops such a
# 3-8 mm tube from it, so that the vein's search and mask may take it.
SPINE_OPENING_MM = 4.0
HOMOGENEOUS_STD_HU = 80.0  # contrast lumen varies ~20-40 HU over 10 mm; trabecular bone more

WIDE_HALF_AXES_MM = (8.0, 4.0)  # (x, y): IVC lumens are >= 16 mm wide, >= 8 mm deep
TISSUE_HU = -30.0  # above fat
NARROW_WEIGHT = 5.0  # with the blob term (<= 1) it outweighs a crus's stronger edge response

# --- Path search (dynamic programming over axial slices).
MAX_STEP_MM = 4.0  # largest in-plane move between 2 mm slices (IVC curving into the atrium)
STEP_COST_PER_MM = 0.12
PRIOR_WEIGHT = 0.35
BLOB_WEIGHT = 1.0
INTENSITY_WEIGHT = 1.0
EXCLUDED_COST = 6.0  # inside another structure or the vertebral body

# --- Masks.
IVC_RADIUS_MM = 11.0  # largest lumen radius accepted around the centreline
AORTA_RADIUS_MM = 13.0
SVC_RADIUS_MM = 9.0
AZYGOS_RADIUS_MM = 4.0
VESSEL_MASK_HU = (-20.0, 3100.0)  # lumen: blood, contrast or cement; not fat or air

# --- Extent.
LUNG_HU = -500.0
# Lung area over body area where the IVC meets the atrium (chest-cta: 0.24-0.31; 0.05-0.10 at
# the lung bases behind the liver): a crude stand-in for a heart mask.
LUNG_FRACTION_THORAX = 0.22
THORAX_MIN_RUN_MM = 30.0
SUPRADIAPHRAGMATIC_IVC_MM = 20.0  # the IVC runs ~1-2.5 cm above the diaphragm into the atrium
CONFLUENCE_BELOW_CREST_MM = 10.0  # iliac confluence: L5, just below the iliac crests' top (L4)
PELVIS_DX_MM = 50.0  # iliac wings lie further than this from the canal
PELVIS_MIN_AREA_MM2 = 100.0  # per side: iliac wing near its crest (abdomen-native: 150-500)
PELVIS_DENSE_HU = 450.0  # cortical pelvis and femora on the 2 mm grid; enhanced kidneys stay below
SVC_RANGE_ABOVE_IVC_MM = (30.0, 100.0)  # SVC-atrium junction to brachiocephalic confluence
SVC_PRIOR_DX_MM = (-14.0, 10.0)  # right of the ascending aorta (chest-cta label: -8 to -18)
SVC_PRIOR_DY_MM = (-100.0, 12.0)
AZYGOS_PRIOR_DX_MM = (-12.0, 6.0)  # right-anterolateral of the thoracic vertebral bodies
AZYGOS_PRIOR_DY_MM = (-32.0, 8.0)
AZYGOS_PRIOR_WEIGHT = 0.5  # the vein is rarely visible on 2 mm voxels: the prior leads
# It starts at L1-L2 behind the crura (ascending lumbar and subcostal veins) and receives the
# lower thoracic segmental veins (clinical-evidence.md §3: thoracic leaks drain to it): from
# the IVC's entry into the atrium (T9-T10) that is four bodies with their discs.
AZYGOS_BELOW_ATRIUM_MM = 120.0


@dataclass(frozen=True, eq=False)
class VenousRoute:
    """Veins cement travels through, and the aorta, on the work grid.

    ``masks`` holds boolean [x, y, z] masks named "ivc", "azygos", "svc", "aorta"; a
    structure not covered by the scan (or not found) is absent. ``ivc_centerline_lps_mm`` has one
    point per axial work-grid slice, caudal to cranial, from the iliac confluence (or the scan's
    lower edge) to the right atrium (or the scan's upper edge). ``notes`` says, per structure,
    how it was found ("image" evidence or "prior" position) and its extent.
    """

    masks: dict[str, np.ndarray]
    ivc_centerline_lps_mm: np.ndarray
    aorta_centerline_lps_mm: np.ndarray
    aorta_enhanced: bool
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Crop:
    """The in-plane box searched; ``cx``/``cy`` the canal centre per slice (grid indices)."""

    x0: int
    x1: int
    y0: int
    y1: int
    cx: np.ndarray
    cy: np.ndarray


def _canal_per_slice(
    canal_ijk: np.ndarray, body: np.ndarray, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canal centre (x, y) on every slice, held constant beyond the canal's ends; and which
    slices had a measured canal. Without any canal, a point 40 mm in front of the body's back."""
    nz = body.shape[2]
    measured = np.zeros(nz, bool)
    if len(canal_ijk):
        ks = canal_ijk[:, 2].astype(int)
        order = np.argsort(ks)
        ks, xs, ys = ks[order], canal_ijk[order, 0], canal_ijk[order, 1]
        all_k = np.arange(nz)
        measured[ks[(ks >= 0) & (ks < nz)]] = True
        return np.interp(all_k, ks, xs), np.interp(all_k, ks, ys), measured
    cx = np.zeros(nz)
    cy = np.zeros(nz)
    for k in range(nz):
        bx, by = np.nonzero(body[:, :, k])
        if len(bx):
            cx[k] = bx.mean()
            cy[k] = by.max() - 40.0 / spacing_mm
    return cx, cy, measured


def _disk(radius_vox: float) -> np.ndarray:
    r = int(np.ceil(radius_vox))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx**2 + yy**2) <= radius_vox**2 + 1e-6


def _ellipse(half_x_vox: float, half_y_vox: float) -> np.ndarray:
    """A normalised elliptical averaging kernel [x, y, 1]."""
    rx, ry = int(np.ceil(half_x_vox)), int(np.ceil(half_y_vox))
    xx, yy = np.mgrid[-rx : rx + 1, -ry : ry + 1]
    kernel = ((xx / half_x_vox) ** 2 + (yy / half_y_vox) ** 2 <= 1.0 + 1e-6).astype(np.float32)
    return (kernel / kernel.sum())[:, :, None]


def _band_cost(values: np.ndarray, low: float, high: float, soft: float) -> np.ndarray:
    """0 inside [low, high], rising linearly to 1 ``soft`` HU outside it."""
    below = np.clip((low - values) / soft, 0.0, 1.0)
    above = np.clip((values - high) / soft, 0.0, 1.0)
    return below + above


def _prior_cost(
    crop: _Crop,
    spacing_mm: float,
    dx_mm: tuple[float, float],
    dy_mm: tuple[float, float],
    ks: np.ndarray,
) -> np.ndarray:
    """Half the squared Mahalanobis distance of each crop voxel from the expected offset."""
    xs = (np.arange(crop.x0, crop.x1)[:, None] - crop.cx[ks][None, :]) * spacing_mm
    ys = (np.arange(crop.y0, crop.y1)[:, None] - crop.cy[ks][None, :]) * spacing_mm
    ex = ((xs - dx_mm[0]) / dx_mm[1]) ** 2 / 2.0
    ey = ((ys - dy_mm[0]) / dy_mm[1]) ** 2 / 2.0
    return np.minimum(ex[:, None, :] + ey[None, :, :], 8.0)


def _track(cost: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The cheapest path through ``cost`` [x, y, k] with one point per slice k, moving at most
    MAX_STEP_MM between slices and paying STEP_COST_PER_MM for each mm moved; (k, 2) indices."""
    nx, ny, nk = cost.shape
    reach = max(1, int(round(MAX_STEP_MM / spacing_mm)))
    shifts = [
        (dx, dy)
        for dx in range(-reach, reach + 1)
        for dy in range(-reach, reach + 1)
        if dx * dx + dy * dy <= reach * reach + 1
    ]
    penalty = np.array(
        [STEP_COST_PER_MM * spacing_mm * float(np.hypot(dx, dy)) for dx, dy in shifts]
    )
    # The accumulated cost of every slice, padded with inf: arriving at (x, y) from
    # (x - dx, y - dy) reads the window at (reach - dx, reach - dy), all shifts in one gather.
    from_x = np.array([reach - dx for dx, _ in shifts])
    from_y = np.array([reach - dy for _, dy in shifts])
    padded = np.full((nk, nx + 2 * reach, ny + 2 * reach), np.inf)
    inner = (slice(reach, reach + nx), slice(reach, reach + ny))
    padded[(0, *inner)] = cost[:, :, 0]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (nx, ny), axis=(1, 2))
    for k in range(1, nk):
        cand = windows[k - 1, from_x, from_y] + penalty[:, None, None]
        np.add(cand.min(axis=0), cost[:, :, k], out=padded[(k, *inner)])
    # Back from the cheapest end: the move into each point is recomputed there only; argmin
    # takes the first of equal moves.
    path = np.zeros((nk, 2), int)
    x, y = np.unravel_index(int(np.argmin(padded[(nk - 1, *inner)])), (nx, ny))
    for k in range(nk - 1, 0, -1):
        path[k] = (x, y)
        index = int(np.argmin(padded[k - 1, x + from_x, y + from_y] + penalty))
        x, y = x - shifts[index][0], y - shifts[index][1]
    path[0] = (x, y)
    return path


def _slice_filters(
    hu_crop: np.ndarray, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axial slice: disk-mean HU, disk standard deviation of HU and a blob score (the
    scale-normalised negative in-plane LoG of the clipped HU: ~1 for a soft-tissue vessel in fat,
    0 or less in flat or dark regions)."""
    disk = _disk(DISK_RADIUS_MM / spacing_mm).astype(np.float32)
    disk /= disk.sum()
    hu = hu_crop.astype(np.float32)
    mean = ndimage.convolve(hu, disk[:, :, None], mode="nearest")
    square = ndimage.convolve(hu * hu, disk[:, :, None], mode="nearest")
    std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    clipped = np.clip(hu, *BLOB_CLIP_HU)
    blob = np.full(hu.shape, -np.inf, np.float32)
    for sigma_x_mm, sigma_y_mm in BLOB_SIGMAS_MM:
        sx, sy = sigma_x_mm / spacing_mm, sigma_y_mm / spacing_mm
        # In-plane, scale-normalised Laplacian only (z resolution differs between scans).
        dxx = ndimage.gaussian_filter(clipped, (sx, sy, 0), order=(2, 0, 0), mode="nearest")
        dyy = ndimage.gaussian_filter(clipped, (sx, sy, 0), order=(0, 2, 0), mode="nearest")
        blob = np.maximum(blob, -(sx**2 * dxx + sy**2 * dyy) / BLOB_FULL_SCORE)
    return mean, std, blob


def _spine_exclusion(
    hu_crop: np.ndarray, crop: _Crop, ks: np.ndarray, spacing_mm: float
) -> np.ndarray:
    """The vertebral bodies with their marrow: bone filled slice by slice, kept near the body's
    expected ellipse (centred VERTEBRA_DY_MM in front of the canal) so that a closed rib cage or a
    contrast-filled aorta touching the spine is not filled in with it."""
    bone = hu_crop >= SPINE_BONE_HU
    xs = np.arange(crop.x0, crop.x1)[:, None, None]
    ys = np.arange(crop.y0, crop.y1)[None, :, None]
    ax, ay = (a / spacing_mm for a in VERTEBRA_HALF_AXES_MM)
    ex = ((xs - crop.cx[ks]) / ax) ** 2
    ey = ((ys - crop.cy[ks] - VERTEBRA_DY_MM / spacing_mm) / ay) ** 2
    radius = max(1, int(round(SPINE_OPENING_MM / spacing_mm)))
    disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
    opened = ndimage.binary_opening(fill_holes_axial(bone), structure=disk[:, :, None])
    return opened & (ex + ey <= 1.0)


def _lumen_mask(
    hu_crop: np.ndarray,
    path: np.ndarray,
    radius_mm: float,
    spacing_mm: float,
    exclude: np.ndarray | None = None,
    hu_range: tuple[float, float] = VESSEL_MASK_HU,
) -> np.ndarray:
    """Per slice, the lumen-like voxels within ``radius_mm`` of that slice's path point that
    connect to it (one path point per slice of ``hu_crop``)."""
    nx, ny, nk = hu_crop.shape
    radius = radius_mm / spacing_mm
    px, py = path[:, 0], path[:, 1]
    # All slices at once: the labelling and the opening connect voxels in-plane only.
    xs = np.arange(nx)[:, None, None]
    ys = np.arange(ny)[None, :, None]
    distance2_vox = (xs - px) ** 2 + (ys - py) ** 2  # squared distance from the slice's point
    lumen = (distance2_vox <= radius**2) & (hu_crop >= hu_range[0]) & (hu_crop <= hu_range[1])
    if exclude is not None:
        lumen &= ~exclude
    labels, _ = ndimage.label(lumen, structure=IN_PLANE)
    seed = labels[px, py, np.arange(nk)]
    vessel = ndimage.binary_opening((labels == seed) & (seed > 0), structure=IN_PLANE)
    vessel |= (distance2_vox <= 1.5**2) & lumen
    # No lumen at the point: a disk of half the radius stands in for it.
    return np.where(seed > 0, vessel, distance2_vox <= (radius / 2) ** 2)


def _iliac_crest_top(grid: WorkGrid, body: np.ndarray, cx: np.ndarray) -> int | None:
    """Highest slice of the iliac wings when the scan's lower edge is in the pelvis, else None.

    The pelvis is taken as present at the lower edge when dense cortical bone (PELVIS_DENSE_HU:
    enhanced renal cortex stays below it) lies far to both sides of the spine there; walking up,
    the first slice without bone on both sides ends the wings (ribs come only after a gap)."""
    spacing = grid.spacing_mm
    xs = np.arange(grid.shape[0])[:, None]
    min_area = PELVIS_MIN_AREA_MM2 / spacing**2

    def both_sides(k: int, threshold_hu: float) -> bool:
        bone = (grid.hu[:, :, k] >= threshold_hu) & body[:, :, k]
        dx = (xs - cx[k]) * spacing
        right = np.count_nonzero(bone & (dx < -PELVIS_DX_MM))
        left = np.count_nonzero(bone & (dx > PELVIS_DX_MM))
        return bool(right >= min_area and left >= min_area)

    lowest = [k for k in range(min(5, grid.shape[2])) if body[:, :, k].any()]
    # Lung in the lowest slices: the scan starts in the chest, and the bone beside it is ribs.
    if any(
        np.count_nonzero((grid.hu[:, :, k] < LUNG_HU) & body[:, :, k]) * spacing**2 > 1000.0
        for k in lowest
    ):
        return None
    if not lowest or sum(both_sides(k, PELVIS_DENSE_HU) for k in lowest) * 2 <= len(lowest):
        return None
    top = lowest[0]
    for k in range(lowest[0], grid.shape[2]):
        if not both_sides(k, SPINE_BONE_HU):
            break
        top = k
    return top


def find_venous_route(
    grid: WorkGrid,
    body: np.ndarray,
    canal_centerline_ijk: np.ndarray,
    heart_mask: np.ndarray | None = None,
    arch_slice: int | None = None,
) -> VenousRoute:
    """Aorta, IVC, azygos and SVC from the spinal canal outward, without contrast if need be.

    Each vessel is the cheapest smooth path (dynamic programming over axial slices) through a
    per-slice cost that combines (a) a round-blob matched filter (Laplacian of Gaussian at the
    scale of a 15-30 mm lumen), (b) the lumen's HU (blood, or contrast where the scan has it),
    (c) a Gaussian prior on the position relative to the spinal canal at that level and
    (d) exclusion of the vertebral bodies and of vessels already found. The aorta is found
    first (it is brighter, or as bright, and left of the spine) so that a calcified or
    contrast-filled aorta is never taken for the IVC. On unenhanced CT the intrahepatic IVC is
    as dense as the liver around it: there the path follows the prior and its own continuity.

    The azygos vein is rarely visible on the 2 mm grid (3-8 mm wide): its mask is a thin tube
    at the prior position right-anterolateral of the thoracic vertebral bodies, nudged onto
    the nearest soft tissue, with a straight arch to the SVC; its note says "prior". The arch
    lies on ``arch_slice`` (the T4 body's centre, where the levels are known: the vein arches
    over the right main bronchus at T4), else on the SVC's top slice. The SVC is searched right
    of the ascending aorta from 30 mm above the IVC's entry into the atrium (or the heart mask's
    top part) to 100 mm above it or the arch, whichever is higher; dense contrast there is
    accepted as lumen.
    """
    spacing = grid.spacing_mm
    nx, ny, _ = grid.shape
    cx, cy, measured = _canal_per_slice(np.asarray(canal_centerline_ijk, float), body, spacing)
    notes: dict[str, str] = {}
    if not measured.any():
        notes["canal"] = "no spinal canal found: positions are relative to the body outline"
    crop = _Crop(
        x0=max(0, int(np.floor(cx.min() + CROP_DX_MM[0] / spacing))),
        x1=min(nx, int(np.ceil(cx.max() + CROP_DX_MM[1] / spacing)) + 1),
        y0=max(0, int(np.floor(cy.min() + CROP_DY_MM[0] / spacing))),
        y1=min(ny, int(np.ceil(cy.max() + CROP_DY_MM[1] / spacing)) + 1),
        cx=cx,
        cy=cy,
    )
    has_body = body.sum(axis=(0, 1)) > 0
    body_ks = np.flatnonzero(has_body)
    masks: dict[str, np.ndarray] = {}
    empty = np.zeros((0, 3))
    if crop.x1 - crop.x0 < 8 or crop.y1 - crop.y0 < 8 or len(body_ks) < 3:
        return VenousRoute(masks, empty, empty, False, {"all": "body too small to search"})
    k_lo, k_hi = int(body_ks[0]), int(body_ks[-1]) + 1
    ks = np.arange(k_lo, k_hi)
    hu_crop = grid.hu[crop.x0 : crop.x1, crop.y0 : crop.y1, k_lo:k_hi]
    body_crop = body[crop.x0 : crop.x1, crop.y0 : crop.y1, k_lo:k_hi]
    mean, std, blob = _slice_filters(hu_crop, spacing)
    # Lumen width: the share of non-fat, non-air voxels in a transverse ellipse. A lumen fills it
    # (even the IVC flattened front to back); the crura (8-10 mm thick, running front to back
    # with fat on both sides) do not.
    wide = _ellipse(WIDE_HALF_AXES_MM[0] / spacing, WIDE_HALF_AXES_MM[1] / spacing)
    # Cement or dense contrast filling a lumen is still the lumen: counted as filling it, or a
    # cast would make its own vein look narrow and push the path off it (bone is excluded below).
    tissue = (hu_crop > TISSUE_HU).astype(np.float32)
    narrow_cost = 1.0 - ndimage.convolve(tissue, wide, mode="nearest")
    spine = _spine_exclusion(hu_crop, crop, ks, spacing)
    outside = ~body_crop

    def place(crop_mask: np.ndarray) -> np.ndarray:
        full = np.zeros(grid.shape, bool)
        full[crop.x0 : crop.x1, crop.y0 : crop.y1, k_lo:k_hi] = crop_mask
        return full

    def to_lps(path: np.ndarray, path_ks: np.ndarray) -> np.ndarray:
        ijk = np.column_stack([path[:, 0] + crop.x0, path[:, 1] + crop.y0, path_ks])
        return grid.to_lps(ijk)

    # --- Aorta. Enhanced when the brightest 10 mm disk in its window is well above blood.
    prior_a = _prior_cost(crop, spacing, AORTA_PRIOR_DX_MM, AORTA_PRIOR_DY_MM, ks)
    window_a = prior_a < 2.0
    lumen_like = window_a & (std < HOMOGENEOUS_STD_HU) & ~spine
    peak = np.where(lumen_like, np.minimum(mean, 1000.0), -1000.0).max(axis=(0, 1))
    aorta_hu = float(np.median(peak))
    enhanced = aorta_hu >= ENHANCED_AORTA_HU
    if enhanced:
        intensity_a = _band_cost(mean, 0.6 * aorta_hu, 1.5 * aorta_hu, 0.3 * aorta_hu)
        intensity_a += np.clip(std / HOMOGENEOUS_STD_HU - 0.5, 0.0, 1.0)
    else:
        intensity_a = _band_cost(mean, BLOOD_HU[0], 120.0, BLOOD_SOFT_HU)
    # The blob term also keeps an enhanced aorta apart from the (as bright but large) heart.
    blob_a = np.clip(blob, 0.0, 1.0)
    cost_a = (
        INTENSITY_WEIGHT * intensity_a
        - BLOB_WEIGHT * blob_a
        + PRIOR_WEIGHT * prior_a
        + EXCLUDED_COST * (outside | spine)
    )
    # Below the iliac crests (L4) the aorta has divided into the iliac arteries.
    crest = _iliac_crest_top(grid, body, crop.cx)
    a_lo = 0 if crest is None else max(0, crest - k_lo)
    path_a = _track(cost_a[:, :, a_lo:], spacing)
    a_hi = len(ks)
    if enhanced:
        # Above the arch the path has no contrast lumen left to follow: stop where it leaves it.
        on_lumen = intensity_a[path_a[:, 0], path_a[:, 1], np.arange(a_lo, len(ks))] < 0.5
        a_hi = a_lo + _last_run_end(on_lumen)
        path_a = path_a[: a_hi - a_lo]
    aorta_crop = np.zeros(hu_crop.shape, bool)
    aorta_crop[:, :, a_lo:a_hi] = _lumen_mask(
        hu_crop[:, :, a_lo:a_hi],
        path_a,
        AORTA_RADIUS_MM,
        spacing,
        hu_range=(0.5 * aorta_hu, 3100.0) if enhanced else VESSEL_MASK_HU,
    )
    masks["aorta"] = place(aorta_crop)
    aorta_line = to_lps(path_a, ks[a_lo:a_hi])
    notes["aorta"] = (
        "image: contrast-filled lumen" if enhanced else "image+prior: unenhanced round blob"
    ) + f", median peak {aorta_hu:.0f} HU"

    # --- IVC: the same search right of the spine, the aorta (with a margin) excluded.
    aorta_zone = ndimage.binary_dilation(aorta_crop, structure=np.ones((3, 3, 1), bool))
    prior_i = _prior_cost(crop, spacing, IVC_PRIOR_DX_MM, IVC_PRIOR_DY_MM, ks)
    # Venous blood is never denser than DENSE_HU except with cement or dense contrast: a mild
    # cost keeps the path through a cemented segment without inviting it onto bone.
    # In the arterial phase venous blood is still unenhanced (chest-cta: IVC 40-120 HU) while the
    # pancreas and bowel wall enhance: the band then stops lower.
    venous_high = ARTERIAL_PHASE_VENOUS_HU if aorta_hu >= ARTERIAL_AORTA_HU else BLOOD_HU[1]
    intensity_i = np.minimum(_band_cost(mean, BLOOD_HU[0], venous_high, BLOOD_SOFT_HU), 1.0)
    intensity_i = np.where(mean > DENSE_HU, 0.6, intensity_i)
    cost_i = (
        INTENSITY_WEIGHT * intensity_i
        - BLOB_WEIGHT * np.clip(blob, 0.0, 1.0)
        + NARROW_WEIGHT * narrow_cost
        + PRIOR_WEIGHT * prior_i
        + EXCLUDED_COST * (outside | spine | aorta_zone)
    )
    ivc_lo, ivc_hi, extent_note = _ivc_extent(grid, body, crest, heart_mask, k_lo, k_hi)
    if ivc_hi - ivc_lo >= 3:
        sub = slice(ivc_lo - k_lo, ivc_hi - k_lo)
        path_i = _track(cost_i[:, :, sub], spacing)
        ivc_ks = np.arange(ivc_lo, ivc_hi)
        ivc_crop = np.zeros_like(aorta_crop)
        ivc_crop[:, :, sub] = _lumen_mask(
            hu_crop[:, :, sub],
            path_i,
            IVC_RADIUS_MM,
            spacing,
            exclude=aorta_zone[:, :, sub] | spine[:, :, sub],
        )
        masks["ivc"] = place(ivc_crop)
        ivc_line = to_lps(path_i, ivc_ks)
        notes["ivc"] = "image+prior: " + extent_note
    else:
        ivc_crop = np.zeros_like(aorta_crop)
        ivc_line = empty
        notes["ivc"] = "not covered: " + extent_note
    reaches_atrium = "right atrium" in extent_note

    # --- SVC: from the atrium up to the brachiocephalic confluence, right of the ascending
    # aorta; any lumen density is accepted (dense contrast is common there).
    taken = aorta_zone | spine | ivc_crop
    svc_crop = np.zeros_like(aorta_crop)
    svc_ks = np.zeros(0, int)
    path_s = np.zeros((0, 2), int)
    if reaches_atrium:
        low = ivc_hi + int(round(SVC_RANGE_ABOVE_IVC_MM[0] / spacing))
        top = ivc_hi + int(round(SVC_RANGE_ABOVE_IVC_MM[1] / spacing))
        if arch_slice is not None:
            top = max(top, arch_slice)
        high = min(k_hi, top + 1)
        if high - low >= 3:
            sub = slice(low - k_lo, high - k_lo)
            prior_s = _prior_cost(crop, spacing, SVC_PRIOR_DX_MM, SVC_PRIOR_DY_MM, ks[sub])
            cost_s = (
                INTENSITY_WEIGHT * _band_cost(mean[:, :, sub], BLOOD_HU[0], 3100.0, BLOOD_SOFT_HU)
                - BLOB_WEIGHT * np.clip(blob[:, :, sub], 0.0, 1.0)
                + PRIOR_WEIGHT * prior_s
                + EXCLUDED_COST * (outside[:, :, sub] | taken[:, :, sub])
            )
            path_s = _track(cost_s, spacing)
            svc_ks = np.arange(low, high)
            svc_crop[:, :, sub] = _lumen_mask(
                hu_crop[:, :, sub],
                path_s,
                SVC_RADIUS_MM,
                spacing,
                exclude=taken[:, :, sub],
            )
            masks["svc"] = place(svc_crop)
            notes["svc"] = "image+prior: from 30 mm above the IVC's entry into the atrium"
            if high < top + 1:
                notes["svc"] += ", cut by the scan's upper edge"
    if "svc" not in masks:
        notes["svc"] = "not covered: the scan does not reach above the right atrium"

    # --- Azygos: beside the thoracic spine from below the diaphragm to its arch over the right
    # main bronchus into the SVC at T4 (the SVC's top slice stands in when levels are unknown:
    # chest-cta, 100 mm above the IVC's entry is the T4-T5 disc).
    if reaches_atrium:
        low = max(k_lo, ivc_hi - int(round(AZYGOS_BELOW_ATRIUM_MM / spacing)))
        arch = k_hi - 1
        if len(svc_ks):
            wanted = svc_ks[-1] if arch_slice is None else arch_slice
            arch = int(np.clip(wanted, svc_ks[0], svc_ks[-1]))
        if arch - low >= 3:
            sub = slice(low - k_lo, arch + 1 - k_lo)
            prior_z = _prior_cost(crop, spacing, AZYGOS_PRIOR_DX_MM, AZYGOS_PRIOR_DY_MM, ks[sub])
            cost_z = (
                INTENSITY_WEIGHT * _band_cost(mean[:, :, sub], TISSUE_HU, 3100.0, BLOOD_SOFT_HU)
                + AZYGOS_PRIOR_WEIGHT * prior_z
                + EXCLUDED_COST * (outside[:, :, sub] | taken[:, :, sub] | svc_crop[:, :, sub])
            )
            path_z = _track(cost_z, spacing)
            radius_z = AZYGOS_RADIUS_MM / spacing
            azygos_crop = _tube(path_z, np.arange(sub.start, sub.stop), aorta_crop.shape, radius_z)
            if len(svc_ks):
                # The arch: a straight tube from the last azygos point to the SVC's centre.
                start = np.array([*path_z[-1], arch - k_lo], float)
                end = np.array([*path_s[arch - int(svc_ks[0])], arch - k_lo], float)
                steps = np.linspace(0.0, 1.0, 12)[:, None]
                line = np.rint(start + (end - start) * steps).astype(int)
                azygos_crop |= _tube(line[:, :2], line[:, 2], aorta_crop.shape, radius_z)
            # Keep soft tissue only: the tube must not reach into the lung or the fat.
            azygos_crop &= ~(taken | svc_crop) & (hu_crop > TISSUE_HU)
            masks["azygos"] = place(azygos_crop)
            notes["azygos"] = "prior: thin tube right-anterolateral of the thoracic spine"
    if "azygos" not in masks:
        notes["azygos"] = "not covered: the scan does not reach the thorax"
    return VenousRoute(masks, ivc_line, aorta_line, enhanced, notes)


def _last_run_end(flags: np.ndarray) -> int:
    """End (exclusive) of the longest run of True: where the path leaves the lumen for good."""
    if not flags.any():
        return len(flags)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int(ends[longest])


def _tube(
    path: np.ndarray, ks: np.ndarray, shape: tuple[int, ...], radius_vox: float
) -> np.ndarray:
    """Disks of ``radius_vox`` around the points (x, y) on slices ``ks``."""
    out = np.zeros(shape, bool)
    xs = np.arange(shape[0])[:, None]
    ys = np.arange(shape[1])[None, :]
    for (px, py), k in zip(path, ks, strict=True):
        out[:, :, int(k)] |= (xs - px) ** 2 + (ys - py) ** 2 <= radius_vox**2
    return out


def _ivc_extent(
    grid: WorkGrid,
    body: np.ndarray,
    crest: int | None,
    heart_mask: np.ndarray | None,
    k_lo: int,
    k_hi: int,
) -> tuple[int, int, str]:
    """Slices [lo, hi) the IVC spans: from the iliac confluence (or the scan's lower edge) to
    the right atrium (or the scan's upper edge), with a note on how each end was set."""
    spacing = grid.spacing_mm
    if crest is None:
        lo, low_note = k_lo, "from the scan's lower edge"
    else:
        lo = max(k_lo, crest - int(round(CONFLUENCE_BELOW_CREST_MM / spacing)))
        low_note = "from the iliac confluence (iliac crests)"
    hi, high_note = k_hi, "to the scan's upper edge"
    if heart_mask is not None and heart_mask.any():
        heart_ks = np.flatnonzero(heart_mask.any(axis=(0, 1)))
        hi = min(k_hi, int(heart_ks[0]) + int(round(SUPRADIAPHRAGMATIC_IVC_MM / spacing)) + 1)
        high_note = "to the right atrium (heart mask)"
    else:
        diaphragm = _diaphragm_slice(grid, body, lo, k_hi)
        if diaphragm is not None:
            hi = min(k_hi, diaphragm + int(round(SUPRADIAPHRAGMATIC_IVC_MM / spacing)) + 1)
            high_note = "to the right atrium (lung bases + 20 mm)"
    return lo, max(lo, hi), f"{low_note} {high_note}"


def _diaphragm_slice(grid: WorkGrid, body: np.ndarray, lo: int, k_hi: int) -> int | None:
    """The lowest slice from which the chest (lung >= LUNG_FRACTION_THORAX of the body's area)
    continues upward for at least THORAX_MIN_RUN_MM; None when the scan never gets there."""
    lung = (grid.hu[:, :, lo:k_hi] < LUNG_HU) & body[:, :, lo:k_hi]
    area_body = np.maximum(body[:, :, lo:k_hi].sum(axis=(0, 1)), 1).astype(float)
    chest = lung.sum(axis=(0, 1)) >= LUNG_FRACTION_THORAX * area_body
    need = max(1, int(round(THORAX_MIN_RUN_MM / grid.spacing_mm)))
    run = 0
    for index, inside in enumerate(chest):
        run = run + 1 if inside else 0
        if run >= need:
            return lo + index - need + 1
    return None
