"""The spinal column: the canal's centerline, found as the soft tissue that bone encloses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cementscan.anatomy.body import IN_PLANE
from cementscan.anatomy.grid import WorkGrid

ENCLOSING_BONE_HU = 200
CANAL_HU = (-60, 120)  # CSF, cord and epidural fat
# What else a canal can hold, denser than any bone at the work grid's 2 mm: epidural cement
# (clinical-evidence.md §1.1), intrathecal contrast. Counted as bone it splits the canal into
# crumbs and walls off a lateral recess, which then outscores them (a fresh classification
# phantom: the centreline 11 mm off for 18 mm along an epidural leak, every side there wrong).
# It joins the canal region it touches, never makes one alone (a body's fill is canal to nobody),
# and only within a few millimetres of it: a pedicle screw beside the canal is no content of it.
CANAL_DENSE_CONTENT_HU = 1000
CANAL_DENSE_REACH_MM = 4.0
ENCLOSURE_REACH_MM = 24.0
MIN_ENCLOSING_DIRECTIONS = 7  # of 8 in-plane directions
SEARCH_HALF_WIDTH_MM = 40.0  # the canal lies within this of the body's centre in x ...
SEARCH_MIN_DEPTH = 0.4  # ... and in the posterior 60% of the body's AP extent
MIN_CANAL_AREA_MM2 = 12.0
FULL_SCORE_AREA_MM2 = 250.0
JUMP_COST_PER_MM = 0.08  # Viterbi: penalty for the canal moving between slices
EMPTY_SLICE_COST = 0.3
OUTLIER_MM = 10.0
MAX_GAP_MM = 30.0  # a longer stretch without canal ends the column (e.g. below the sacrum)
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))


def _or_shifted(out: np.ndarray, mask: np.ndarray, dx: int, dy: int) -> None:
    """``out[x, y] |= mask[x + dx, y + dy]`` where that lies inside ``mask`` (in place)."""
    nx, ny = mask.shape[:2]
    src_x = slice(max(dx, 0), nx + min(dx, 0))
    dst_x = slice(max(-dx, 0), nx + min(-dx, 0))
    src_y = slice(max(dy, 0), ny + min(dy, 0))
    dst_y = slice(max(-dy, 0), ny + min(-dy, 0))
    out[dst_x, dst_y] |= mask[src_x, src_y]


def enclosure_score(bone: np.ndarray, reach_voxels: int) -> np.ndarray:
    """For every voxel, in how many of 8 in-plane directions bone lies within ``reach_voxels``."""
    score = np.zeros(bone.shape, np.uint8)
    hit = np.empty_like(bone, dtype=bool)
    for dx, dy in _DIRECTIONS:
        hit[...] = False
        for step in range(1, reach_voxels + 1):
            _or_shifted(hit, bone, dx * step, dy * step)
        score += hit
    return score


def _slice_candidates(
    enclosed: np.ndarray, body: np.ndarray, spacing_mm: float
) -> list[list[tuple[float, float, float]]]:
    """Per axial slice, the enclosed soft-tissue regions where a canal can be: (x, y, area_mm2).

    All slices at once: each slice's 2-D components are labelled in one pass (no connectivity
    across slices), so within a slice they keep the 2-D raster order; centres and areas are
    sums of whole voxel indices, exact in float64."""
    nx, ny, nz = enclosed.shape
    counts = body.sum(axis=(0, 1))
    has_body = counts >= 100
    # The body's centre in x and its y range per slice: the search window.
    sum_x = np.tensordot(np.arange(nx), body.sum(axis=1), axes=(0, 0))
    centre_x = sum_x[has_body] / counts[has_body]
    rows = np.asarray(body.any(axis=0))[:, has_body]  # (y, slices with body)
    y0 = np.argmax(rows, axis=0)
    y1 = ny - 1 - np.argmax(rows[::-1], axis=0)
    in_x = np.abs(np.arange(nx)[:, None] - centre_x[None, :]) * spacing_mm <= SEARCH_HALF_WIDTH_MM
    in_y = (np.arange(ny)[:, None] - y0[None, :]) / np.maximum(y1 - y0, 1)[
        None, :
    ] >= SEARCH_MIN_DEPTH
    regions = np.zeros(enclosed.shape, bool)
    regions[:, :, has_body] = enclosed[:, :, has_body] & in_x[:, None, :] & in_y[None, :, :]
    labels, count = ndimage.label(regions, structure=IN_PLANE)
    out: list[list[tuple[float, float, float]]] = [[] for _ in range(nz)]
    if count == 0:
        return out
    flat = labels.ravel()
    inside = np.flatnonzero(flat)
    ids = flat[inside]
    i, j, k = np.unravel_index(inside, labels.shape)
    sizes = np.bincount(ids, minlength=count + 1)[1:].astype(float)
    areas = sizes * spacing_mm**2
    centre_i = np.bincount(ids, weights=i.astype(float), minlength=count + 1)[1:] / sizes
    centre_j = np.bincount(ids, weights=j.astype(float), minlength=count + 1)[1:] / sizes
    slice_of = np.zeros(count + 1, np.int64)
    slice_of[ids] = k
    for index in range(count):
        if areas[index] >= MIN_CANAL_AREA_MM2:
            out[int(slice_of[index + 1])].append(
                (float(centre_i[index]), float(centre_j[index]), float(areas[index]))
            )
    return out


def _best_path(
    candidates: list[list[tuple[float, float, float]]], spacing_mm: float
) -> list[tuple[int, float, float]]:
    """Viterbi over slices: the chain of candidates that is large and moves little."""
    prev_states: list[tuple[float, float, float] | None] = [None]
    prev_values = [0.0]
    backs: list[list[int]] = []
    states_per_slice: list[list[tuple[float, float, float] | None]] = []
    for found in candidates:
        states: list[tuple[float, float, float] | None] = [None, *found]
        values: list[float] = []
        back: list[int] = []
        for state in states:
            gain = (
                -EMPTY_SLICE_COST
                if state is None
                else min(state[2], FULL_SCORE_AREA_MM2) / FULL_SCORE_AREA_MM2
            )
            best_value, best_index = -np.inf, 0
            for index, (prev, value) in enumerate(zip(prev_states, prev_values, strict=True)):
                cost = 0.0
                if state is not None and prev is not None:
                    cost = (
                        JUMP_COST_PER_MM
                        * spacing_mm
                        * float(np.hypot(state[0] - prev[0], state[1] - prev[1]))
                    )
                if value - cost > best_value:
                    best_value, best_index = value - cost, index
            values.append(best_value + gain)
            back.append(best_index)
        backs.append(back)
        states_per_slice.append(states)
        prev_states, prev_values = states, values
    index = int(np.argmax(prev_values))
    path: list[tuple[int, float, float]] = []
    for k in range(len(candidates) - 1, -1, -1):
        state = states_per_slice[k][index]
        if state is not None:
            path.append((k, state[0], state[1]))
        index = backs[k][index]
    return path[::-1]


def canal_centerline(grid: WorkGrid, body: np.ndarray) -> np.ndarray:
    """The spinal canal's centre on every axial work-grid slice it spans, as (n, 3) grid indices
    (x, y, k) with k consecutive; empty (0, 3) when no canal is found.

    The canal is CSF/cord/fat that bone surrounds in nearly every in-plane direction
    (vertebral body in front, pedicles beside, laminae behind); a Viterbi pass keeps the
    one continuous chain through the slices, and a running median drops stray slices.
    """
    bone = (grid.hu >= ENCLOSING_BONE_HU) & body
    soft = (grid.hu >= CANAL_HU[0]) & (grid.hu <= CANAL_HU[1])
    reach = max(1, int(round(ENCLOSURE_REACH_MM / grid.spacing_mm)))
    surrounded = enclosure_score(bone, reach) >= MIN_ENCLOSING_DIRECTIONS
    enclosed = _with_dense_content(
        soft & surrounded, surrounded & (grid.hu >= CANAL_DENSE_CONTENT_HU), grid.spacing_mm
    )
    path = np.asarray(
        _best_path(_slice_candidates(enclosed, body, grid.spacing_mm), grid.spacing_mm)
    )
    if len(path) < 3:
        return np.zeros((0, 3))
    window = max(1, int(round(12.0 / grid.spacing_mm)))
    keep = np.ones(len(path), bool)
    for _ in range(3):
        medians = np.array(
            [
                np.median(path[keep & (np.abs(path[:, 0] - k) <= window), 1:], axis=0)
                if np.any(keep & (np.abs(path[:, 0] - k) <= window))
                else path[i, 1:]
                for i, k in enumerate(path[:, 0])
            ]
        )
        keep = np.hypot(*(path[:, 1:] - medians).T) * grid.spacing_mm <= OUTLIER_MM
    path = _longest_run(path[keep], max_gap=int(round(MAX_GAP_MM / grid.spacing_mm)))
    if len(path) < 3:
        return np.zeros((0, 3))
    ks = np.arange(int(path[0, 0]), int(path[-1, 0]) + 1)
    x = ndimage.gaussian_filter1d(np.interp(ks, path[:, 0], path[:, 1]), 1.5)
    y = ndimage.gaussian_filter1d(np.interp(ks, path[:, 0], path[:, 2]), 1.5)
    return np.column_stack([x, y, ks.astype(float)])


def _with_dense_content(canal: np.ndarray, dense: np.ndarray, spacing_mm: float) -> np.ndarray:
    """``canal`` grown in-plane into the ``dense`` voxels within CANAL_DENSE_REACH_MM of it."""
    steps = max(1, int(round(CANAL_DENSE_REACH_MM / spacing_mm)))
    return ndimage.binary_dilation(canal, structure=IN_PLANE, iterations=steps, mask=canal | dense)


def _longest_run(path: np.ndarray, max_gap: int) -> np.ndarray:
    """The longest stretch of ``path`` (rows k, x, y) with no gap in k above ``max_gap``."""
    if len(path) == 0:
        return path
    breaks = np.flatnonzero(np.diff(path[:, 0]) > max_gap) + 1
    runs = np.split(path, breaks)
    return max(runs, key=len)


# --- a frame that follows the canal: used to straighten the spine and to measure along it ---

FRAME_TANGENT_SMOOTHING_SLICES = 3.0  # the canal's direction over ~12 mm, not slice noise
# The canal's centre swings front to back within each vertebra (the soft tissue it is found as
# reaches into the disc and foramina at each disc's level): followed, planes perpendicular to it
# fan out in front of the canal and misplace the discs (abdomen-native-3mm: tilt -34..+13 deg
# within 20 mm, discs 6-13 mm off). The frame follows the course smoothed over ~a body.
FRAME_COURSE_SMOOTHING_MM = 10.0
# Over a canal shorter than about three bodies the swing does not average out and most of the
# course lies within two sigmas of an end, where smoothing drags it towards the end's centre:
# such short crops keep the course as found.
FRAME_COURSE_MIN_LENGTH_MM = 90.0
FRAME_EXTRAPOLATION_FIT_SLICES = 6
STRAIGHT_U_MM = (-50.0, 50.0)  # lateral (+ = patient's left)
STRAIGHT_V_MM = (-40.0, 70.0)  # anterior of the canal's centre (+) and posterior (-)
# Voxels within this box around the canal get frame coordinates: bodies reach ~60 mm in front
# of the canal's centre, spinous processes ~75 mm behind it, transverse processes ~50 mm aside.
ROI_LATERAL_MM = 60.0
ROI_ANTERIOR_MM = 75.0
ROI_POSTERIOR_MM = 80.0


@dataclass(frozen=True, eq=False)
class SpineFrame:
    """A moving frame along the canal centerline, one point per axial work-grid slice.

    ``points`` are grid indices (x, y, k); ``tangent`` points cranially, ``anterior`` is the
    patient's anterior direction made perpendicular to it, ``lateral`` = tangent x anterior
    points to the patient's left. Slices ``inner_range`` (inclusive) hold the canal itself;
    the others extrapolate it a little past its ends.
    """

    points: np.ndarray  # (m, 3)
    tangent: np.ndarray
    anterior: np.ndarray
    lateral: np.ndarray
    spacing_mm: float
    inner_range: tuple[int, int]

    @property
    def step_mm(self) -> np.ndarray:
        """Distance from each frame point to the next (the last repeats)."""
        d = np.linalg.norm(np.diff(self.points, axis=0), axis=1) * self.spacing_mm
        return np.concatenate([d, d[-1:]]) if len(d) else np.ones(1) * self.spacing_mm

    @property
    def arc_mm(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.step_mm[:-1])])

    @property
    def first_in_grid(self) -> int:
        return 0

    @property
    def last_in_grid(self) -> int:
        return len(self.points) - 1

    @property
    def has_bone(self) -> np.ndarray:
        return np.ones(len(self.points), bool)

    def point(self, s: float, u_mm: float, v_mm: float) -> np.ndarray:
        """Grid index of the point ``u_mm`` left and ``v_mm`` anterior of the frame at ``s``."""
        i = int(np.clip(np.floor(s), 0, len(self.points) - 2)) if len(self.points) > 1 else 0
        f = s - i
        j = min(i + 1, len(self.points) - 1)
        centre = (1 - f) * self.points[i] + f * self.points[j]
        return centre + (u_mm * self.lateral[i] + v_mm * self.anterior[i]) / self.spacing_mm


def spine_frame(grid: WorkGrid, centerline_ijk: np.ndarray, extend_mm: float = 0.0) -> SpineFrame:
    """The frame along ``centerline_ijk`` (rows x, y, k with consecutive k), extrapolated
    straight by up to ``extend_mm`` past each end where the grid continues."""
    c = np.asarray(centerline_ijk, dtype=float).copy()
    if len(c) * grid.spacing_mm >= FRAME_COURSE_MIN_LENGTH_MM:
        sigma = FRAME_COURSE_SMOOTHING_MM / grid.spacing_mm
        c[:, :2] = ndimage.gaussian_filter1d(c[:, :2], sigma, axis=0, mode="nearest")
    n_extra = int(round(extend_mm / grid.spacing_mm))
    fit = min(FRAME_EXTRAPOLATION_FIT_SLICES, len(c))
    below = min(n_extra, int(c[0, 2]))
    above = min(n_extra, grid.shape[2] - 1 - int(c[-1, 2]))
    parts = [c]
    if below > 0:
        slope = (c[fit - 1] - c[0]) / max(fit - 1, 1)
        parts.insert(0, c[0] - slope * np.arange(below, 0, -1)[:, None])
    if above > 0:
        slope = (c[-1] - c[-fit]) / max(fit - 1, 1)
        parts.append(c[-1] + slope * np.arange(1, above + 1)[:, None])
    points = np.concatenate(parts)
    smooth = ndimage.gaussian_filter1d(
        points, FRAME_TANGENT_SMOOTHING_SLICES, axis=0, mode="nearest"
    )
    tangent = np.gradient(smooth, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    anterior = np.tile([0.0, -1.0, 0.0], (len(points), 1))
    anterior -= (anterior * tangent).sum(axis=1, keepdims=True) * tangent
    anterior /= np.linalg.norm(anterior, axis=1, keepdims=True)
    lateral = np.cross(tangent, anterior)
    return SpineFrame(
        points, tangent, anterior, lateral, grid.spacing_mm, (below, below + len(c) - 1)
    )


def straighten(
    volume: np.ndarray,
    frame: SpineFrame,
    u_mm: tuple[float, float] = STRAIGHT_U_MM,
    v_mm: tuple[float, float] = STRAIGHT_V_MM,
    order: int = 1,
    cval: float = -1024.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample ``volume`` ([x, y, z] on the frame's grid) into planes perpendicular to the
    canal: out[i, p, q] at frame point i, ``us[p]`` mm left, ``vs[q]`` mm anterior."""
    sp = frame.spacing_mm
    us = np.arange(u_mm[0], u_mm[1] + 1e-6, sp)
    vs = np.arange(v_mm[0], v_mm[1] + 1e-6, sp)
    points = (
        frame.points[:, None, None, :]
        + (us / sp)[None, :, None, None] * frame.lateral[:, None, None, :]
        + (vs / sp)[None, None, :, None] * frame.anterior[:, None, None, :]
    )
    source = volume if volume.dtype.kind == "f" else volume.astype(np.float32)
    out = ndimage.map_coordinates(
        source, points.reshape(-1, 3).T, order=order, cval=cval, mode="constant"
    )
    return out.reshape(points.shape[:3]), us, vs


@dataclass(frozen=True, eq=False)
class FrameCoordinates:
    """Frame coordinates of the voxels in ``roi`` (a box of the work grid): ``s`` the
    fractional frame slice, ``u_mm`` left and ``v_mm`` anterior of the canal's centre."""

    roi: tuple[slice, slice, slice]
    s: np.ndarray
    u_mm: np.ndarray
    v_mm: np.ndarray


def spine_roi_coordinates(grid: WorkGrid, frame: SpineFrame) -> FrameCoordinates:
    """Project every voxel near the canal onto the frame (two Newton steps from its slice)."""
    sp = grid.spacing_mm
    margin = (
        np.array([ROI_LATERAL_MM / sp, ROI_ANTERIOR_MM / sp, 0.0]),
        np.array([ROI_LATERAL_MM / sp, ROI_POSTERIOR_MM / sp, 0.0]),
    )
    low = np.maximum(np.floor(frame.points.min(axis=0) - margin[0]), 0).astype(int)
    high = np.minimum(np.ceil(frame.points.max(axis=0) + margin[1]) + 1, grid.shape).astype(int)
    roi = (slice(low[0], high[0]), slice(low[1], high[1]), slice(low[2], high[2]))
    f32 = np.float32
    xs = np.arange(low[0], high[0], dtype=f32)[:, None, None]
    ys = np.arange(low[1], high[1], dtype=f32)[None, :, None]
    ks = np.arange(low[2], high[2], dtype=f32)[None, None, :]
    m = len(frame.points)
    pts = frame.points.astype(f32)
    tan = frame.tangent.astype(f32)
    der = (np.gradient(frame.points, axis=0) if m > 1 else np.array([[0.0, 0.0, 1.0]])).astype(f32)
    slope = np.maximum((der * tan).sum(axis=1), 0.2).astype(f32)
    shape = (len(xs[:, 0, 0]), len(ys[0, :, 0]), len(ks[0, 0, :]))
    s = np.broadcast_to(np.clip(ks - pts[0, 2], 0, m - 1), shape).astype(f32)
    for _ in range(2):
        i = np.clip(np.rint(s), 0, m - 1).astype(np.intp)
        offset = (xs - pts[i, 0]) * tan[i, 0] + (ys - pts[i, 1]) * tan[i, 1]
        offset += (ks - pts[i, 2]) * tan[i, 2]
        s = i + offset / slope[i]
    i = np.clip(np.rint(s), 0, m - 1).astype(np.intp)
    f = (s - i).astype(f32)
    u = np.zeros(shape, f32)
    v = np.zeros(shape, f32)
    lat = frame.lateral.astype(f32)
    ant = frame.anterior.astype(f32)
    for axis, coord in enumerate((xs, ys, ks)):
        rel = coord - (pts[i, axis] + f * der[i, axis])
        u += rel * lat[i, axis]
        v += rel * ant[i, axis]
    return FrameCoordinates(roi, s.astype(f32), u * f32(sp), v * f32(sp))
