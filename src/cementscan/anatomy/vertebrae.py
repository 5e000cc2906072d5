"""Vertebral bodies, discs, canal, foramina and posterior elements along the canal centerline."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.stats import median_abs_deviation

from cementscan.anatomy.grid import WorkGrid
from cementscan.anatomy.spine import SpineFrame, spine_frame, spine_roi_coordinates, straighten

# --- disc detection -------------------------------------------------------------------------
# The patch whose brightness profile finds the discs: the vertebral body's core in the plane
# perpendicular to the canal, anterior of the canal (which has a radius of ~6-10 mm).
PATCH_ANTERIOR_MM = (6.0, 40.0)
PATCH_HALF_WIDTH_MM = 14.0
CANAL_FRONT_SEARCH_MM = 2.0  # the body's back is looked for from here forwards ...
BODY_BACK_HU = 150.0  # ... as the first bone on the midline (smoothed over ~60 mm)
BODY_BACK_MAX_SHIFT_MM = 12.0  # beyond PATCH_ANTERIOR_MM[0]: a wide canal, not a missing body
CORE_SAMPLE_MM = 20.0  # the body's own brightness: the median over this depth behind its back
PROFILE_CLIP_HU = (-200.0, 600.0)  # cement (1200-3000 HU) must not make a treated body a "disc"
PROFILE_PERCENTILE = 80.0
# The core is profiled in bands from back to front: an endplate tilted against the frame
# (a wedge fracture, lordosis, scoliosis) crosses a thin band within a slice or two, where
# across the whole depth it would be smeared over several.
PROFILE_BANDS = 1
BAND_SHIFT_SLICES = 3  # the bands' features are combined over +-1 slice of such a shift
# Above any bone on ~2 mm voxels (cortex 700-1500 HU is < 2 mm thick and averages lower); PMMA
# cement with its contrast agent is 1200-3000 HU.
CEMENT_MIN_HU = 1100.0
# Cement's partial-volume rim (the scanner's blur, 1-3 mm, plus a voxel) reads 300-1,000 HU,
# as bright as an endplate: voxels this many (2 mm) steps from cement stay out of the profile.
CEMENT_RIM_VOXELS = 2
CORE_WINDOW_SLICES = 31  # ~60 mm: a few bodies, so the front is the column's, not a disc's
CORE_CORTEX_MARGIN = 3  # voxels (6 mm) kept off the anterior cortex  # the endplates' brightness, not the (often osteoporotic) core's
# Top-hats this fraction of the local vertebral period wide keep discs with their endplates
# (lumbar 8-12 mm of a 35-40 mm period) and drop the broad mid-body dip.
TOPHAT_FRACTION_OF_PERIOD = 0.45
SMOOTHING_FRACTION_OF_PERIOD = 0.1
# How much a dark gap counts against a bright line. Thick slices over osteoporotic bone show
# the endplate-disc-endplate complex as one bright line flanked by narrow dips (chest-cta: dark
# gaps must count less); dense bodies show the disc as a dark gap between bright endplates
# (counted fully). Both are tried and the chain that is stronger per disc wins.
DARK_WEIGHTS = (0.3,)
PERIOD_RANGE_MM = (13.0, 48.0)  # C3 (~13 mm with its disc) to a tall lumbar body with its disc
DEFAULT_PERIOD_MM = 24.0  # a mid-thoracic body plus disc, before the scan's own is measured
# Body height follows body depth: period ~0.68 x (canal centre to the body's front), measured
# on chest-cta (T1-T3 ~16 mm of ~24, T6-L2 ~24 of ~36) and abdomen-native-3mm (L1-L5 ~33 of 50).
PERIOD_PER_DEPTH = 0.68
PRIOR_COST = 1.5  # per unit of squared log-ratio of a link to the depth-expected period
MAX_PERIOD_RATIO = 1.5  # neighbouring bodies (with their discs) differ by less than this
PEAK_REWARD = 1.0  # a disc candidate's reward per unit of robust-normalised prominence
IRREGULARITY_COST = 3.0  # per unit of squared log-ratio of neighbouring periods
MISSING_DISC_COST = 1.0  # beyond MAX_PERIOD_RATIO: likely a missed or a spurious disc
# A link this much longer than the depth-expected period spans two bodies: the disc between
# them left no peak (destroyed by spondylodiscitis, or a collapsed or cemented body beside it).
# It is bridged at a cost, with a disc placed half-way, instead of breaking the chain.
MISSED_DISC_RATIO = 1.6
MISSED_DISC_COST = 1.5
# Endplate peaks either side of one unresolved disc lie closer than this fraction of the period.
# Dense bone on thin slices shows the disc itself as a dark gap between two bright endplates;
# the chain's peak then sits on one of the endplates (abdomen-native-3mm: 5-8 mm cranial). The
# disc is moved onto the darkest slice within this fraction of the period when that slice is
# darker than the bone on both sides of it by GAP_MIN_CONTRAST_HU and darker than the bodies'
# cores (the profile's lower quartile over a period either side) by GAP_BELOW_CORE_HU: disc
# tissue is darker than cancellous bone. A thick-slice endplate complex, one bright line over a
# dim core (chest-cta), has no such gap beside it: it stays.
GAP_SEARCH_FRACTION = 0.3
GAP_MIN_CONTRAST_HU = 40.0
GAP_BELOW_CORE_HU = 20.0
PAIR_FRACTION = 0.45
# The second cue: the bony ring around the canal closes once per vertebra, at the pedicles,
# and opens between them at the foramina (the disc's level). Bone is counted beside the canal,
# from just outside its lateral wall outwards, at the depth of the canal's anterior half, where
# pedicles and foramina alternate (the facet joints lie behind, the rib heads further out).
RING_BONE_HU = 200.0
RING_LATERAL_MM = (1.0, 11.0)  # beyond the canal's lateral radius
RING_AP_MM = (-1.0, 0.0)  # from just behind the canal's centre to its front (+ its radius)
RING_MIN_PROMINENCE = 0.15  # of the bone fraction: a pedicle's peak over a foramen's trough
RING_MIN_DISTANCE = 0.6  # of the depth-expected period: closer peaks are one pedicle's
RING_RATIO_RANGE = (0.6, 1.7)  # pedicle spacings this far from the depth-expected period ...
RING_MIN_REGULAR = 0.7  # ... in this share of them: the ring is read; otherwise it is not used
RING_MIN_PEAKS = 4
PEDICLE_COST = 2.0  # per pedicle too many (merged bodies) or missing (a split body) in a link
# --- body, disc and canal masks ---------------------------------------------------------------
BODY_EDGE_FRACTION = 0.5  # body edge: half-way between soft tissue and the body's own HU
# The body's own HU is its bone's (cement excluded, and counted up to cancellous bone's
# +300..+400, clinical-evidence.md §4): a body filled with cement (1,200-3,000 HU) would
# otherwise put its edge at the cement's and shrink the mask of exactly the treated bodies.
TRABECULAR_MAX_HU = 400.0
SOFT_TISSUE_HU = 40.0
BODY_MAX_DEPTH_MM = 60.0
BODY_MIN_DEPTH_MM = 12.0
BODY_MAX_ASPECT = 1.6  # body half-width / half-depth (lumbar bodies are widest, ~1.5)
# A body's depth (AP) changes little from one vertebra to the next (a fracture takes height, not
# depth): one far shallower than its neighbours ended its midline ray inside it, where something
# dark crosses it in part of its slices: the streak between two pedicle screws (photon
# starvation), a vacuum cleft (fresh phantom seed 2080, 1 mm slices: the treated L2 22 mm deep,
# its neighbours 38-42 mm, its mask 10 mm too posterior and the cement beside its augmented
# screws lost as their halo). Its front is looked for beyond this share of their depth.
BODY_DEPTH_OF_NEIGHBOURS = 0.75
NEIGHBOUR_BODIES = 2  # on each side
DISC_HALF_THICKNESS_FRACTION = 0.1  # of the period: thoracic discs ~4-6 mm, lumbar ~8-12 mm
CANAL_BONE_HU = 200.0
CANAL_MAX_RADIUS_MM = 13.0
CANAL_MIN_RADIUS_MM = 4.0
CANAL_RAYS = 16
# Cement in the canal (an epidural leak, Yeom type B through the basivertebral foramen into the
# ventral epidural plexus, clinical-evidence.md §1.1) is no canal wall: a ray whose first
# "bone" is cement or its partial-volume rim (1-3 mm of blur) has not measured the canal, and
# takes the same ray's median over this reach of slices where it did; where no slice did, it
# keeps what it found. The canal's cross-section changes little over a body or two.
CANAL_RIM_MM = 3.0
CANAL_FILL_REACH_MM = 40.0
FORAMEN_DEPTH_MM = 14.0  # lateral extent of a foramen beyond the canal wall
FORAMEN_AP_MM = (-8.0, 6.0)  # around the canal's AP centre (anterior positive)
FORAMEN_CRANIAL_FRACTION = 0.35  # of the upper body's period: the foramen rises above the disc
POSTERIOR_BONE_HU = 180.0
POSTERIOR_MAX_LATERAL_MM = 45.0  # transverse-process tips; ribs beyond are not the vertebra's
POSTERIOR_MAX_DEPTH_MM = 75.0  # spinous-process tips behind the canal
PARTIAL_MIN_FRACTION = 0.85  # an end segment at least this long of its neighbour counts as whole
# The column's end inside the scan: beyond it the core's profile is soft tissue (a high
# percentile of muscle or fat stays under this; an osteoporotic body's, with its cortex, above
# it) for at least END_SOFT_MIN_MM, and not air padding outside the grid (clipped to -200).
END_BONE_HU = 110.0
END_SOFT_MIN_MM = 6.0
OUTSIDE_SCAN_HU = -150.0
NOT_BONE_HU = 60.0  # fat, muscle, viscera; even fatty marrow is above
SINGLE_BODY_MIN_RATIO = 0.75  # of the depth-expected period, for a lone disc-to-disc body
BOTH_SIDES_FRACTION = 0.3  # of the period: a disc has bone this close on both sides
EXTEND_MM = 20.0  # the frame is extrapolated this far past the canal's ends to find end discs
BODY_HEIGHT_MM = (10.0, 60.0)  # C7 (~13 mm with its disc) to a tall lumbar body with its discs


@dataclass(frozen=True, eq=False)
class VertebralBody:
    """One body between two discs (or a disc and the scan's edge), numbered cranial to caudal."""

    index: int
    complete: bool  # both endplates lie in the scan: the centroid is the body's own
    centroid_lps_mm: tuple[float, float, float] | None  # None for a partial body
    z_range_mm: tuple[float, float]  # (caudal, cranial) z of the body's mask
    s_range: tuple[float, float]  # (cranial, caudal) position along the frame, in slices
    centre_ijk: tuple[float, float, float]  # grid index of the body's centre (on the frame)


@dataclass(frozen=True, eq=False)
class SpineResult:
    """What find_vertebrae found: bodies, discs and masks on the work grid ([x, y, z] booleans).

    Masks are named ``vertebral_body_<n>``, ``disc_<n>_<n+1>``, ``foramen_<side>_<n>`` (the
    foramen below body n, named after the vertebra above as anatomy does), ``spinal_canal`` and
    ``posterior_elements``; ``n`` counts the bodies in ``bodies`` from 0 (cranial).
    """

    bodies: tuple[VertebralBody, ...]
    disc_centres_lps_mm: tuple[tuple[float, float, float], ...]  # disc n lies below body n
    masks: dict[str, np.ndarray]
    frame: SpineFrame | None
    disc_s: tuple[float, ...]  # disc positions along the frame, cranial to caudal
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def complete_bodies(self) -> tuple[VertebralBody, ...]:
        return tuple(b for b in self.bodies if b.complete)


def empty_spine(warning: str) -> SpineResult:
    return SpineResult((), (), {}, None, (), (warning,))


# --- discs -----------------------------------------------------------------------------------


def _cement_and_rim(hu: np.ndarray) -> np.ndarray:
    """Cement (CEMENT_MIN_HU) and its partial-volume rim (CEMENT_RIM_VOXELS steps) in ``hu``."""
    return np.asarray(ndimage.binary_dilation(hu >= CEMENT_MIN_HU, iterations=CEMENT_RIM_VOXELS))


def disc_profile(
    straight_hu: np.ndarray, u_mm: np.ndarray, v_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame slice, a high percentile of the clipped HU in the body's core, and the period
    (mm) expected from the body's depth.

    The core excludes the anterior cortex, which is bright on every slice and would hide the
    endplates: the body's front is found on a running mean of the midline over ~60 mm.
    """
    clipped = np.clip(straight_hu, *PROFILE_CLIP_HU)
    # Cement (and its partial-volume rim) fills much of a treated body's core: left in, its
    # edges look like endplates. It is left out of the percentile.
    profiled = np.where(_cement_and_rim(straight_hu), np.nan, clipped)
    u0 = int(np.argmin(np.abs(u_mm)))
    step = float(v_mm[1] - v_mm[0])
    # The running mean leaves out slices beyond the scan's edge (air padding), which would make
    # the end bodies look shallow.
    central = clipped[:, max(u0 - 2, 0) : u0 + 3].mean(axis=1)
    scanned = (central > OUTSIDE_SCAN_HU).astype(float)
    weight = ndimage.uniform_filter1d(scanned, CORE_WINDOW_SLICES, axis=0, mode="nearest")
    midline = ndimage.uniform_filter1d(
        central * scanned, CORE_WINDOW_SLICES, axis=0, mode="nearest"
    ) / np.maximum(weight, 1e-3)
    start = int(np.searchsorted(v_mm, PATCH_ANTERIOR_MM[0]))
    search = int(np.searchsorted(v_mm, CANAL_FRONT_SEARCH_MM))
    out = np.empty((len(straight_hu), PROFILE_BANDS))
    depth_mm = np.empty(len(straight_hu))
    for i in range(len(straight_hu)):
        # The body's back: the first bone in front of the canal (the canal's radius varies
        # between patients and levels; a fixed start would put CSF and epidural fat, or the
        # posterior cortex, into the core's profile).
        ray = midline[i, search:]
        back = np.flatnonzero(ray >= BODY_BACK_HU)
        first = int(back[0]) if len(back) else start - search
        first = min(first, max(start - search, 0) + int(BODY_BACK_MAX_SHIFT_MM / step))
        body_start = search + first + CORE_CORTEX_MARGIN // 2 + 1
        ray = midline[i, body_start:]
        # The front is where the body's own (core) brightness, not its cortex's, falls half-way
        # to soft tissue.
        level = _body_edge_level(ray[: int(CORE_SAMPLE_MM / step)])
        below = np.flatnonzero(ray[3:] < level)
        depth = (below[0] + 3) if len(below) else len(ray)
        stop = body_start + max(int(depth) - CORE_CORTEX_MARGIN, 3)
        depth += body_start - start  # from the patch's nominal start, as the period expects
        half = max(2, min(int(PATCH_HALF_WIDTH_MM / 2), int(0.4 * depth)))
        edges = np.linspace(body_start, stop, PROFILE_BANDS + 1).round().astype(int)
        for band in range(PROFILE_BANDS):
            lo, hi = edges[band], max(edges[band + 1], edges[band] + 1)
            patch = profiled[i, u0 - half : u0 + half + 1, lo:hi]
            kept = patch[~np.isnan(patch)]
            out[i, band] = (
                np.percentile(kept, PROFILE_PERCENTILE) if kept.size >= 0.2 * patch.size else np.nan
            )
        depth_mm[i] = v_mm[min(start + int(depth), len(v_mm) - 1)]
    for band in range(PROFILE_BANDS):
        column = out[:, band]
        missing = np.isnan(column)
        if missing.all():
            column[:] = PROFILE_CLIP_HU[0]
        elif missing.any():  # a slice (nearly) filled with cement: the neighbours' value
            column[missing] = np.interp(
                np.flatnonzero(missing), np.flatnonzero(~missing), column[~missing]
            )
    # Beyond the scan's edge (the frame runs on past it) the depth is unknown, not small.
    inside = clipped[:, u0, start:].max(axis=1) > OUTSIDE_SCAN_HU
    if inside.any() and not inside.all():
        depth_mm[~inside] = np.interp(
            np.flatnonzero(~inside), np.flatnonzero(inside), depth_mm[inside]
        )
    depth_mm = ndimage.median_filter(depth_mm, CORE_WINDOW_SLICES, mode="nearest")
    period_mm = np.clip(PERIOD_PER_DEPTH * depth_mm, *PERIOD_RANGE_MM)
    return out, period_mm


def _narrow_structure(
    profile: np.ndarray, period_slices: np.ndarray, dark_weight: float = DARK_WEIGHTS[0]
) -> np.ndarray:
    """How much the profile stands out, up or down, over widths below a fraction of the local
    period: white plus black top-hat, then smoothing.

    A disc is a narrow event either way: with thick slices and osteoporotic bone the
    endplate-disc-endplate complex is one bright line over a dim core (chest-cta), with thin
    slices and dense bone a dark disc between endplates (abdomen-native-3mm). The mid-body dip
    is broad and drops out.
    """
    out = np.empty_like(profile)
    sizes = np.clip(np.rint(TOPHAT_FRACTION_OF_PERIOD * period_slices), 2, None).astype(int)
    for size in np.unique(sizes):
        tophat = np.zeros_like(profile)
        tophat += ndimage.white_tophat(profile, size=int(size), mode="nearest")
        tophat += dark_weight * ndimage.black_tophat(profile, size=int(size), mode="nearest")
        sigma = max(0.7, SMOOTHING_FRACTION_OF_PERIOD * float(size) / TOPHAT_FRACTION_OF_PERIOD)
        smooth = ndimage.gaussian_filter1d(tophat, sigma, mode="nearest")
        out[sizes == size] = smooth[sizes == size]
    return out


def _robust_scale(values: np.ndarray) -> float:
    return max(float(median_abs_deviation(values, scale="normal")), 1e-3)


def _pick_discs(
    feature: np.ndarray,
    step_mm: np.ndarray,
    valid: np.ndarray,
    prior_mm: np.ndarray,
    pedicles: np.ndarray | None = None,
    column_ends: tuple[float | None, ...] = (),
) -> tuple[list[int], float]:
    """The chain of feature peaks that is strong and regularly spaced (dynamic programming),
    and its score.

    Each peak earns its normalised prominence; a link between consecutive chosen peaks costs
    the squared log-ratio of its length to the previous link's (bodies change height slowly)
    and is only allowed within PERIOD_RANGE_MM.
    """
    from scipy.signal import find_peaks, peak_prominences  # here: scipy.signal costs ~0.7 s

    peaks, _props = find_peaks(feature, prominence=0.0)
    peaks = peaks[valid[peaks]]
    if len(peaks) == 0:
        return [], 0.0
    prominence = peak_prominences(feature, peaks)[0] / _robust_scale(feature)
    reward = PEAK_REWARD * np.minimum(prominence, 3.0) - 0.3
    # Two peaks close together may be the endplates either side of one disc that the slices
    # do not resolve: their midpoint is a candidate too, as strong as the stronger of them.
    if len(peaks) > 1:
        close = np.diff(peaks) < PAIR_FRACTION * prior_mm[peaks[:-1]] / step_mm[peaks[:-1]]
        pairs = np.flatnonzero(close)
        mids = np.rint(0.5 * (peaks[pairs] + peaks[pairs + 1])).astype(int)
        fresh = ~np.isin(mids, peaks)
        peaks = np.concatenate([peaks, mids[fresh]])
        reward = np.concatenate([reward, np.maximum(reward[pairs], reward[pairs + 1])[fresh]])
    # The column's ends inside the scan close its end bodies like a disc: the chain may run to
    # them (bridging a disc that left no peak) at no reward; they are not discs themselves.
    virtual = np.zeros(len(peaks), bool)
    for end in column_ends:
        if end is not None and not np.any(np.abs(peaks - end) < 1):
            peaks = np.append(peaks, int(round(end)))
            reward = np.append(reward, 0.0)
            virtual = np.append(virtual, True)
    order = np.argsort(peaks, kind="stable")
    peaks, reward, virtual = peaks[order], reward[order], virtual[order]
    arc_mm = np.concatenate([[0.0], np.cumsum(step_mm[:-1])])
    pos = arc_mm[peaks]
    n = len(peaks)

    def bodies_in(i: int, j: int) -> int:
        """How many bodies a link from peak i to peak j spans: one, or two when the disc
        between them left no peak (a destroyed disc, a collapsed or cemented body)."""
        gap = pos[j] - pos[i]
        expected = prior_mm[(peaks[i] + peaks[j]) // 2]
        if gap > MISSED_DISC_RATIO * expected and gap / 2 >= PERIOD_RANGE_MM[0]:
            return 2
        return 1

    ped = np.zeros(0, int) if pedicles is None else np.asarray(pedicles)

    def pedicle_cost(i: int, j: int, count: int) -> float:
        """A body holds one pair of pedicles: a link that holds more merges bodies, one that
        holds none (where the ring is seen on both sides of it) splits one."""
        if len(ped) == 0:
            return 0.0
        inside = int(np.sum((ped > peaks[i]) & (ped < peaks[j])))
        if inside > count:
            return PEDICLE_COST * (inside - count)
        if inside < count and peaks[i] > ped[0] and peaks[j] < ped[-1]:
            return PEDICLE_COST * (count - inside)
        return 0.0

    # A pedicle within half a period of the frame's ends may belong to a body the scan cuts.
    half = 0.5 * prior_mm[ped] / step_mm[ped] if len(ped) else np.zeros(0)
    inner = (ped >= half) & (ped <= len(feature) - 1 - half)

    def end_cost(beyond: np.ndarray) -> float:
        """The segment beyond the chain's end holds one body (or part of one): more pedicles
        there mean a disc was left out."""
        return PEDICLE_COST * max(int(np.sum(beyond & inner)) - 1, 0)

    # state: (last peak j, previous peak i) -> best score; i = -1 when j is the first.
    best: dict[tuple[int, int], float] = {}
    back: dict[tuple[int, int], tuple[int, int] | None] = {}
    # Where the pedicles are read, the chain spans them: it starts below the third and ends
    # above the last but two (a weak disc there is kept rather than the chain cut short).
    spanning = len(ped) >= RING_MIN_PEAKS
    for j in range(n):
        if not spanning or peaks[j] < ped[2]:
            best[(j, -1)] = reward[j] - end_cost(ped < peaks[j])
            back[(j, -1)] = None
        for i in range(j):
            count = bodies_in(i, j)
            gap = (pos[j] - pos[i]) / count
            if not PERIOD_RANGE_MM[0] <= gap <= PERIOD_RANGE_MM[1]:
                continue
            candidates = [(k, h) for (k, h) in best if k == i]
            ring_cost = pedicle_cost(i, j, count)
            top, arg = -np.inf, None
            expected = prior_mm[(peaks[i] + peaks[j]) // 2]
            for state in candidates:
                h = state[1]
                cost = PRIOR_COST * float(np.log(gap / expected)) ** 2 + ring_cost
                cost += MISSED_DISC_COST * (count - 1)
                if h >= 0:
                    ratio = np.log(gap / ((pos[i] - pos[h]) / bodies_in(h, i)))
                    cost += IRREGULARITY_COST * ratio**2
                    if abs(ratio) > np.log(MAX_PERIOD_RATIO):
                        cost += MISSING_DISC_COST
                if best[state] - cost > top:
                    top, arg = best[state] - cost, state
            if arg is not None:
                best[(j, i)] = top + reward[j]
                back[(j, i)] = arg
    ends = [k for k in best if not spanning or peaks[k[0]] > ped[-3]]
    if not ends:
        if spanning:
            return _pick_discs(feature, step_mm, valid, prior_mm, None, column_ends)
        return [], 0.0
    final = {k: best[k] - end_cost(ped > peaks[k[0]]) for k in ends}
    key: tuple[int, int] | None = max(final, key=lambda k: final[k])
    score = final[key] if key is not None else 0.0
    chain: list[int] = []
    while key is not None:
        j, i = key
        if not virtual[j]:
            chain.append(int(peaks[j]))
        if i >= 0 and bodies_in(i, j) == 2:  # the missed disc, half-way
            chain.append(int(round(0.5 * (peaks[i] + peaks[j]))))
        key = back[key]
    return sorted(chain), float(score)


def ring_closure(
    straight_hu: np.ndarray, u_mm: np.ndarray, v_mm: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """Per frame slice, the fraction of bone beside the canal at the pedicles' depth: high at
    the pedicles (once per vertebra), low at the foramina."""
    lateral = float(np.median(radii[:, 0]))
    front = float(np.median(radii[:, CANAL_RAYS // 4]))
    side = np.abs(u_mm)[:, None]
    box = (
        (side >= lateral + RING_LATERAL_MM[0])
        & (side <= lateral + RING_LATERAL_MM[1])
        & (v_mm[None, :] >= RING_AP_MM[0])
        & (v_mm[None, :] <= front + RING_AP_MM[1])
    )
    if not box.any():
        return np.zeros(len(straight_hu))
    closed = (straight_hu[:, box] >= RING_BONE_HU).mean(axis=1)
    return ndimage.gaussian_filter1d(closed, 1.0, mode="nearest")


def ring_peaks(ring: np.ndarray, step_mm: np.ndarray, prior_mm: np.ndarray) -> np.ndarray:
    """Frame slices of the pedicles (the ring's closures), one per vertebra; empty when the ring
    does not show a regular sequence of them."""
    step = float(np.median(step_mm))
    distance = max(2, int(RING_MIN_DISTANCE * float(np.median(prior_mm)) / step))
    from scipy.signal import find_peaks  # here: importing scipy.signal costs ~0.7 s

    peaks, _ = find_peaks(ring, prominence=RING_MIN_PROMINENCE, distance=distance)
    if len(peaks) < RING_MIN_PEAKS:
        return np.zeros(0, int)
    arc_mm = np.concatenate([[0.0], np.cumsum(step_mm[:-1])])
    gaps = np.diff(arc_mm[peaks])
    expected = prior_mm[(peaks[1:] + peaks[:-1]) // 2]
    ratio = gaps / expected
    regular = (ratio >= RING_RATIO_RANGE[0]) & (ratio <= RING_RATIO_RANGE[1])
    if regular.mean() < RING_MIN_REGULAR:
        return np.zeros(0, int)
    return np.asarray(peaks)


def find_discs(
    straight_hu: np.ndarray,
    frame: SpineFrame,
    u_mm: np.ndarray,
    v_mm: np.ndarray,
    radii: np.ndarray | None = None,
) -> tuple[list[int], np.ndarray]:
    """Disc positions (frame slice indices, caudal first as the frame runs) in two passes:
    the first with the default period, the second with the period the first one measured;
    and the core's brightness profile (mean over its bands).

    With the canal's ``radii`` the pedicles are read too (the bony ring beside the canal closes
    once per vertebra): a chain whose bodies hold two pedicles (merged) or none (split) pays
    for it, and the chain spans the pedicles' run.
    """
    profile, prior_mm = disc_profile(straight_hu, u_mm, v_mm)
    pedicles = np.zeros(0, int)
    if radii is not None:
        ring = ring_closure(straight_hu, u_mm, v_mm, radii)
        pedicles = ring_peaks(ring, frame.step_mm, prior_mm)
    step_mm = frame.step_mm
    mean_profile = profile.mean(axis=1)
    valid = frame.has_bone & _bone_both_sides(mean_profile, prior_mm / step_mm)
    middle = len(mean_profile) // 2
    column_ends = (
        _bone_end(mean_profile, middle, 0, step_mm, frame.inner_range),
        _bone_end(mean_profile, middle, len(mean_profile) - 1, step_mm, frame.inner_range),
    )
    arc_mm = np.concatenate([[0.0], np.cumsum(step_mm[:-1])])
    best_discs: list[int] = []
    best_quality = -np.inf
    best_feature = np.zeros(len(mean_profile))
    for dark_weight in DARK_WEIGHTS:
        period = prior_mm / step_mm
        discs: list[int] = []
        score = 0.0
        for _ in range(2):
            feature = np.mean(
                [
                    ndimage.maximum_filter1d(
                        _narrow_structure(profile[:, band], period, dark_weight),
                        BAND_SHIFT_SLICES,
                        mode="nearest",
                    )
                    for band in range(profile.shape[1])
                ],
                axis=0,
            )
            discs, score = _pick_discs(feature, step_mm, valid, prior_mm, pedicles, column_ends)
            if len(discs) < 3:
                break
            mids = 0.5 * (arc_mm[discs[1:]] + arc_mm[discs[:-1]])
            local_mm = np.interp(arc_mm, mids, np.diff(arc_mm[discs]))
            period = np.clip(local_mm, *PERIOD_RANGE_MM) / step_mm
        # Score per disc: how strong and regular the chain is, not how long.
        quality = score / max(len(discs), 1)
        if quality > best_quality:
            best_discs, best_quality, best_feature = discs, quality, feature
    if len(best_discs) == 2:
        # A single body between two discs has no neighbour to vouch for it: unless it is about
        # as tall as its depth predicts, one of the two is an endplate, not a disc.
        low, high = best_discs
        if arc_mm[high] - arc_mm[low] < SINGLE_BODY_MIN_RATIO * prior_mm[(low + high) // 2]:
            best_discs = [low if best_feature[low] >= best_feature[high] else high]
    return [_onto_gap(mean_profile, d, prior_mm, step_mm) for d in best_discs], mean_profile


def _onto_gap(profile: np.ndarray, disc: int, prior_mm: np.ndarray, step_mm: np.ndarray) -> int:
    """``disc`` moved onto the dark gap between its endplates where the profile shows one."""
    reach = max(1, int(round(GAP_SEARCH_FRACTION * prior_mm[disc] / step_mm[disc])))
    lo, hi = max(disc - reach, 1), min(disc + reach, len(profile) - 2)
    if hi < lo:
        return disc
    gap = lo + int(np.argmin(profile[lo : hi + 1]))
    below = profile[max(gap - reach, 0) : gap].max()
    above = profile[gap + 1 : gap + 1 + reach].max()
    period = int(round(prior_mm[disc] / step_mm[disc]))
    core = np.percentile(profile[max(disc - period, 0) : disc + period + 1], 25)
    bright_both_sides = min(below, above) >= profile[gap] + GAP_MIN_CONTRAST_HU
    return gap if bright_both_sides and profile[gap] <= core - GAP_BELOW_CORE_HU else disc


def _bone_both_sides(profile: np.ndarray, period_slices: np.ndarray) -> np.ndarray:
    """Per slice: is there bone (not soft tissue) on both sides within a fraction of the period?
    A disc lies between two bodies; the column's end (bone, then soft tissue) is not a disc.
    Beyond the scan's edge (air padding) nothing is known, and nothing is excluded."""
    n = len(profile)
    out = np.ones(n, bool)
    for i in range(n):
        w = max(2, int(round(BOTH_SIDES_FRACTION * period_slices[i])))
        for side in (profile[i + 2 : i + 2 + w], profile[max(i - 1 - w, 0) : max(i - 1, 0)]):
            seen = side[side > OUTSIDE_SCAN_HU]
            if len(seen) >= 2 and np.median(seen) < NOT_BONE_HU:
                out[i] = False
    return out


def _bone_end(
    profile: np.ndarray,
    disc: int,
    edge: int,
    step_mm: np.ndarray,
    canal: tuple[int, int] | None = None,
) -> float | None:
    """The frame position where the body beyond ``disc`` (towards ``edge``) ends, when the
    profile there turns to soft tissue for good before the scan's edge (and, given the frame
    slices ``canal`` where the canal was found, the canal ends there too: a dim osteoporotic
    body at the scan's edge is not the column's end); else None."""
    direction = 1 if edge > disc else -1
    span = np.arange(disc + direction, edge + direction, direction)
    if len(span) == 0:
        return None
    soft = (profile[span] > OUTSIDE_SCAN_HU) & (profile[span] < END_BONE_HU)
    bone = np.flatnonzero(~soft)
    last_bone = int(bone.max()) if len(bone) else -1
    beyond = span[last_bone + 1 :]
    if len(beyond) * float(np.median(step_mm)) < END_SOFT_MIN_MM or last_bone < 0:
        return None
    if canal is not None and not np.any((beyond < canal[0]) | (beyond > canal[1])):
        return None
    # every slice beyond must be soft tissue (not air outside the grid): the bone ended
    return float(span[last_bone]) + 0.5 * direction


# --- masks -----------------------------------------------------------------------------------


def _body_edge_level(core_hu: np.ndarray) -> float:
    """The HU where a body ends: half-way from soft tissue to its own bone, read on core samples
    below TRABECULAR_MAX_HU (not the cement in a treated body; NaN samples are left out)."""
    bone = core_hu[core_hu < TRABECULAR_MAX_HU]
    interior = float(np.median(bone)) if len(bone) else 0.0
    interior = float(np.clip(interior, 150.0, TRABECULAR_MAX_HU))
    return SOFT_TISSUE_HU + BODY_EDGE_FRACTION * (interior - SOFT_TISSUE_HU)


def _body_ellipse(
    mean_hu: np.ndarray,
    u_mm: np.ndarray,
    v_mm: np.ndarray,
    canal_front_mm: float,
    min_depth_mm: float = BODY_MIN_DEPTH_MM,
) -> tuple[float, float, float]:
    """(centre v, half-depth, half-width) in mm of a body's cross-section from its image.

    Depth along the midline ray from the canal's front, ending no nearer than ``min_depth_mm``;
    width at mid-depth, the narrower side doubled (the aorta lies against one side and in a CTA
    is as bright as bone).
    """
    u0 = int(np.argmin(np.abs(u_mm)))
    ray = mean_hu[max(u0 - 1, 0) : u0 + 2].mean(axis=0)
    step = float(v_mm[1] - v_mm[0])
    start = int(np.searchsorted(v_mm, canal_front_mm))
    stop = int(np.searchsorted(v_mm, canal_front_mm + BODY_MAX_DEPTH_MM))
    # Off the cement's blurred rim too (CEMENT_RIM_VOXELS), and only where most of the core is
    # off it: a fresh phantom's treated T11, its core one 379 HU sample of posterior wall beside
    # the fill's rim, had its edge put at 209 HU, inside its 175 HU trabecular bone, and its mask
    # 24 mm wide for a 44 mm body, the fill's outer third outside it.
    core = np.where(_cement_and_rim(ray), np.nan, ray)[start + 2 : start + 8]
    level = _body_edge_level(core if 2 * np.isfinite(core).sum() > len(core) else core[:0])
    front = stop
    for index in range(start + int(min_depth_mm / step), min(stop, len(ray))):
        if ray[index] < level:
            front = index
            break
    depth_mm = float(np.clip((front - start) * step, BODY_MIN_DEPTH_MM, BODY_MAX_DEPTH_MM))
    centre_v = canal_front_mm + 0.5 * depth_mm
    vc = int(np.argmin(np.abs(v_mm - centre_v)))
    row = mean_hu[:, max(vc - 1, 0) : vc + 2].mean(axis=1)
    half_widths = []
    for direction in (1, -1):
        index = u0
        while 0 <= index + direction < len(row) and row[index + direction] >= level:
            index += direction
        half_widths.append(abs(index - u0) * step)
    half_width = float(
        np.clip(min(half_widths), 0.5 * depth_mm * 0.6, 0.5 * depth_mm * BODY_MAX_ASPECT)
    )
    return centre_v, 0.5 * depth_mm, half_width


def _shallow_bodies(
    ellipses: list[tuple[float, float, float]], complete: list[bool]
) -> dict[int, float]:
    """Complete bodies far shallower than their complete neighbours (BODY_DEPTH_OF_NEIGHBOURS),
    each with the depth its front is looked for beyond."""
    depths = [2.0 * half_depth for _, half_depth, _ in ellipses]
    out: dict[int, float] = {}
    for n, depth in enumerate(depths):
        if not complete[n]:
            continue
        near = range(max(0, n - NEIGHBOUR_BODIES), min(len(depths), n + NEIGHBOUR_BODIES + 1))
        others = [depths[m] for m in near if m != n and complete[m]]
        if len(others) >= 2:
            floor_mm = BODY_DEPTH_OF_NEIGHBOURS * float(np.median(others))
            if depth < floor_mm:
                out[n] = floor_mm
    return out


def _any_plausible_body(bounds: list[tuple[float, float, bool]], arc_mm: np.ndarray) -> bool:
    """Whether the complete bodies are mostly as tall as vertebrae: those of a vertebra's height
    span more of the column than those beyond it (a bridged missed disc makes one body too tall
    among many; a chain that is no spine is mostly too tall or too short). A crop shorter than a
    body, whose ends the scan cuts, cannot be judged by height."""
    slices = np.arange(len(arc_mm))
    plausible_mm = implausible_mm = 0.0
    for upper, lower, complete in bounds:
        if not complete:
            continue
        height = abs(
            float(np.interp(upper, slices, arc_mm)) - float(np.interp(lower, slices, arc_mm))
        )
        if BODY_HEIGHT_MM[0] <= height <= BODY_HEIGHT_MM[1]:
            plausible_mm += height
        else:
            implausible_mm += height
    return implausible_mm <= plausible_mm


def _canal_radii(straight_hu: np.ndarray, u_mm: np.ndarray, v_mm: np.ndarray) -> np.ndarray:
    """Per frame slice, the canal's radius (mm) along CANAL_RAYS in-plane directions."""
    step = float(u_mm[1] - u_mm[0])
    u0 = float(np.argmin(np.abs(u_mm)))
    v0 = float(np.argmin(np.abs(v_mm)))
    angles = np.linspace(0, 2 * np.pi, CANAL_RAYS, endpoint=False)
    radii_mm = np.arange(1.0, CANAL_MAX_RADIUS_MM + step, step * 0.5)
    uu = u0 + np.outer(np.cos(angles), radii_mm) / step
    vv = v0 + np.outer(np.sin(angles), radii_mm) / step
    n = len(straight_hu)
    coords = np.stack(
        [
            np.repeat(np.arange(n), uu.size).astype(float),
            np.tile(uu.ravel(), n),
            np.tile(vv.ravel(), n),
        ]
    )
    samples = ndimage.map_coordinates(straight_hu, coords, order=1, mode="nearest")
    samples = samples.reshape(n, CANAL_RAYS, len(radii_mm))
    bone = samples >= CANAL_BONE_HU
    first = np.where(bone.any(axis=2), bone.argmax(axis=2), len(radii_mm) - 1)
    radius = radii_mm[first]
    # Rays stopped by cement: the wall is read on the same ray where cement does not hide it.
    rim = int(np.ceil(CANAL_RIM_MM / (step * 0.5)))
    beyond = np.arange(len(radii_mm))[None, None, :] - first[:, :, None]
    blocked = np.any((samples >= CEMENT_MIN_HU) & (beyond >= 0) & (beyond <= rim), axis=2)
    if blocked.any() and not blocked.all():
        reach = max(1, int(round(CANAL_FILL_REACH_MM / step)))
        measured = np.where(blocked, np.nan, radius)
        for i, r in zip(*np.nonzero(blocked), strict=True):
            near = measured[max(i - reach, 0) : i + reach + 1, r]
            if np.isfinite(near).any():
                radius[i, r] = float(np.nanmedian(near))
    # Open directions (foramina, interlaminar gaps) are capped near the closed ones' size.
    cap = 1.3 * np.median(radius, axis=1, keepdims=True)
    radius = np.minimum(radius, cap)
    radius = ndimage.median_filter(radius, size=(5, 1), mode="nearest")
    return np.maximum(radius, CANAL_MIN_RADIUS_MM)


def find_vertebrae(
    grid: WorkGrid, body: np.ndarray, canal_centerline_ijk: np.ndarray
) -> SpineResult:
    """Vertebral bodies, discs, canal, foramina and posterior elements on the work grid.

    Discs are the peaks of the endplate-brightness profile along the canal, chosen as a regular
    chain; bodies are elliptic cylinders between discs sized from their own cross-section.
    """
    t0 = time.perf_counter()
    centerline = np.asarray(canal_centerline_ijk, dtype=float)
    if len(centerline) < 5:
        return empty_spine("no spinal canal found: no vertebrae")
    frame = spine_frame(grid, centerline, extend_mm=EXTEND_MM)
    straight, u_mm, v_mm = straighten(grid.hu, frame)
    t1 = time.perf_counter()
    radii = _canal_radii(straight, u_mm, v_mm)  # (n, rays)
    disc_idx, profile = find_discs(straight, frame, u_mm, v_mm, radii)  # caudal -> cranial
    t2 = time.perf_counter()
    if len(disc_idx) < 1:
        return SpineResult((), (), {}, frame, (), ("no intervertebral disc found",))
    # Frame slice indices, cranial first.
    discs_cc = sorted(disc_idx, reverse=True)
    arc_mm = frame.arc_mm
    bounds: list[tuple[float, float, bool]] = []  # (cranial s, caudal s, complete)
    periods = np.diff(arc_mm[sorted(disc_idx)])
    # An end segment (above the first disc, below the last) is whole only when it is as long as
    # its measured neighbour; with a single disc there is no neighbour to compare with, and the
    # scan's edge may cut the body anywhere.
    above_mm = arc_mm[frame.last_in_grid] - arc_mm[discs_cc[0]]
    below_mm = arc_mm[discs_cc[-1]] - arc_mm[frame.first_in_grid]
    whole_above = len(periods) > 0 and above_mm >= PARTIAL_MIN_FRACTION * periods[-1]
    whole_below = len(periods) > 0 and below_mm >= PARTIAL_MIN_FRACTION * periods[0]
    bounds.append((float(frame.last_in_grid), float(discs_cc[0]), bool(whole_above)))
    for disc_a, disc_b in itertools.pairwise(discs_cc):
        bounds.append((float(disc_a), float(disc_b), True))
    bounds.append((float(discs_cc[-1]), float(frame.first_in_grid), bool(whole_below)))
    # Where the column's bone ends inside the scan (soft tissue, not the scan's edge, beyond
    # it), the end body is whole and ends there, however short it is.
    top_end = _bone_end(profile, discs_cc[0], frame.last_in_grid, frame.step_mm, frame.inner_range)
    if top_end is not None:
        bounds[0] = (top_end, bounds[0][1], True)
    bottom_end = _bone_end(
        profile, discs_cc[-1], frame.first_in_grid, frame.step_mm, frame.inner_range
    )
    if bottom_end is not None:
        bounds[-1] = (bounds[-1][0], bottom_end, True)
    if not _any_plausible_body(bounds, arc_mm):
        # A chain that is no spine (a mediastinal crop: "bodies" of 4 and 150 mm between bright
        # bands of the heart and vessels) names nothing: its "discs" and "bodies" would turn
        # emboli into paravertebral leaks.
        return SpineResult((), (), {}, frame, (), ("no body of a vertebra's height: no spine",))
    coords = spine_roi_coordinates(grid, frame)
    s_vox, u_vox, v_vox, roi = coords.s, coords.u_mm, coords.v_mm, coords.roi
    hu_roi = grid.hu[roi]
    body_roi = body[roi]
    canal_front = float(np.median(radii[:, CANAL_RAYS // 4]))  # the ray pointing anterior (+v)
    images, ellipses = [], []
    for upper, lower, _complete in bounds:
        height = abs(upper - lower)
        core = slice(int(np.ceil(lower + 0.25 * height)), int(np.floor(upper - 0.25 * height)) + 1)
        if core.stop <= core.start:
            core = slice(int(lower), int(upper) + 1)
        images.append(straight[core].mean(axis=0))
        ellipses.append(_body_ellipse(images[-1], u_mm, v_mm, canal_front))
    for n, min_depth_mm in _shallow_bodies(ellipses, [b[2] for b in bounds]).items():
        ellipses[n] = _body_ellipse(images[n], u_mm, v_mm, canal_front, min_depth_mm)
    heights = [abs(u - lo) for u, lo, _ in bounds]
    disc_half = [
        max(0.5, DISC_HALF_THICKNESS_FRACTION * 0.5 * (heights[j] + heights[j + 1]))
        for j in range(len(bounds) - 1)
    ]
    # One pass labels every ROI voxel: 2n = body n, 2n + 1 = the disc below it, -1 neither.
    edges: list[float] = []  # ascending s: body/disc boundaries from the caudal end
    for j in range(len(bounds) - 1, -1, -1):
        upper, lower, _ = bounds[j]
        edges.append(lower + (disc_half[j] if j < len(disc_half) else 0.0))
        edges.append(upper - (disc_half[j - 1] if j > 0 else 0.0))
    codes = []  # the code of the interval starting at each edge
    for j in range(len(bounds) - 1, -1, -1):
        codes.extend([2 * j, 2 * j - 1])
    position = np.searchsorted(np.asarray(edges), s_vox, side="right") - 1
    code = np.where(position >= 0, np.asarray([*codes, -1])[np.clip(position, 0, None)], -1)
    code[s_vox > bounds[0][0]] = -1
    params = np.array(
        [ellipses[c // 2] if c % 2 == 0 else
         tuple(0.5 * (ellipses[c // 2][k] + ellipses[c // 2 + 1][k]) for k in range(3))
         for c in range(2 * len(bounds) - 1)]
    )  # fmt: skip
    safe = np.clip(code, 0, None)
    cv, hd, hw = params[safe, 0], params[safe, 1], params[safe, 2]
    inside = (code >= 0) & ((u_vox / hw) ** 2 + ((v_vox - cv) / hd) ** 2 <= 1.0) & body_roi
    code = np.where(inside, code, -1)
    del cv, hd, hw, safe, inside

    def full(mask_roi: np.ndarray) -> np.ndarray:
        out = np.zeros(grid.shape, bool)
        out[roi] = mask_roi
        return out

    masks: dict[str, np.ndarray] = {}
    bodies: list[VertebralBody] = []
    number_of: dict[int, int] = {}  # segment j -> body number n (segments with voxels only)
    for j, (upper, lower, complete) in enumerate(bounds):
        mask_roi = code == 2 * j
        if not mask_roi.any():
            continue
        idx = np.argwhere(mask_roi) + [r.start for r in roi]
        zs = grid.z_mm(idx[:, 2])
        centre = frame.point(0.5 * (upper + lower), 0.0, ellipses[j][0])
        centroid = tuple(float(c) for c in grid.to_lps(idx.mean(axis=0))) if complete else None
        number_of[j] = len(bodies)
        bodies.append(
            VertebralBody(
                index=len(bodies),
                complete=bool(complete),
                centroid_lps_mm=centroid,  # type: ignore[arg-type]
                z_range_mm=(float(np.min(zs)), float(np.max(zs))),
                s_range=(float(upper), float(lower)),
                centre_ijk=tuple(float(c) for c in centre),  # type: ignore[arg-type]
            )
        )
        masks[f"vertebral_body_{number_of[j]}"] = full(mask_roi)
    disc_centres: list[tuple[float, float, float]] = []
    disc_s: list[float] = []
    for j in range(len(bounds) - 1):
        if j not in number_of or j + 1 not in number_of:
            continue
        n = number_of[j]
        s_disc = bounds[j][1]
        masks[f"disc_{n}_{n + 1}"] = full(code == 2 * j + 1)
        cv = 0.5 * (ellipses[j][0] + ellipses[j + 1][0])
        disc_centres.append(tuple(float(c) for c in grid.to_lps(frame.point(s_disc, 0.0, cv))))  # type: ignore[arg-type]
        disc_s.append(float(s_disc))
    # Spinal canal: inside the ray-cast radius, within the canal's own extent.
    rho = np.hypot(u_vox, v_vox)
    theta = np.mod(np.arctan2(v_vox, u_vox), 2 * np.pi)
    ray = np.rint(theta / (2 * np.pi) * CANAL_RAYS).astype(int) % CANAL_RAYS
    s_index = np.clip(np.rint(s_vox).astype(int), 0, len(radii) - 1)
    within = (s_vox >= frame.inner_range[0]) & (s_vox <= frame.inner_range[1])
    soft = hu_roi < CANAL_BONE_HU
    # Cement (and its blurred rim) inside the canal's radius is a leak into the canal, not bone.
    cement = _cement_and_rim(hu_roi)
    canal_roi = within & (rho <= radii[s_index, ray]) & (soft | cement) & body_roi
    masks["spinal_canal"] = full(canal_roi)
    canal_lateral = float(np.median(radii[:, 0]))
    # Foramina: soft tissue just beside the canal, from each disc up into the body above it.
    foramina = np.zeros(s_vox.shape, bool)
    ap = (v_vox >= FORAMEN_AP_MM[0]) & (v_vox <= FORAMEN_AP_MM[1])
    lateral = (np.abs(u_vox) > canal_lateral) & (np.abs(u_vox) <= canal_lateral + FORAMEN_DEPTH_MM)
    for j, s_disc in enumerate(disc_s):
        span = FORAMEN_CRANIAL_FRACTION * heights[j]
        foramina |= (s_vox >= s_disc - 1.0) & (s_vox <= s_disc + span)
    # Cement in a foramen (a cortical-defect leak through the posterior wall, clinical-evidence.md
    # §1.1 type C) is no pedicle or facet: it counts as the foramen's content, not its bone.
    foramina_roi = foramina & ap & lateral & (soft | cement) & body_roi
    masks["foramina"] = full(foramina_roi)
    # Posterior elements: bone around and behind the canal that is not a body.
    posterior = (
        within
        & (hu_roi >= POSTERIOR_BONE_HU)
        & (v_vox <= canal_front)
        & (v_vox >= -POSTERIOR_MAX_DEPTH_MM)
        & (np.abs(u_vox) <= POSTERIOR_MAX_LATERAL_MM)
        & (code < 0)
        & ~(canal_roi | foramina_roi)
        & body_roi
    )
    masks["posterior_elements"] = full(posterior)
    t3 = time.perf_counter()
    return SpineResult(
        bodies=tuple(bodies),
        disc_centres_lps_mm=tuple(disc_centres),
        masks=masks,
        frame=frame,
        disc_s=tuple(disc_s),
        timings_s={"straighten": t1 - t0, "discs": t2 - t1, "masks": t3 - t2},
    )
