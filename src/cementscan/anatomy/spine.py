"""The spinal column: the canal's centerline, found as the soft tissue that bone encloses."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cementscan.anatomy.grid import WorkGrid

ENCLOSING_BONE_HU = 200
CANAL_HU = (-60, 120)  # CSF, cord and epidural fat
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


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``out[x, y] = mask[x + dx, y + dy]``, False beyond the edge."""
    out = np.zeros_like(mask)
    nx, ny = mask.shape[:2]
    src_x = slice(max(dx, 0), nx + min(dx, 0))
    dst_x = slice(max(-dx, 0), nx + min(-dx, 0))
    src_y = slice(max(dy, 0), ny + min(dy, 0))
    dst_y = slice(max(-dy, 0), ny + min(-dy, 0))
    out[dst_x, dst_y] = mask[src_x, src_y]
    return out


def enclosure_score(bone: np.ndarray, reach_voxels: int) -> np.ndarray:
    """For every voxel, in how many of 8 in-plane directions bone lies within ``reach_voxels``."""
    score = np.zeros(bone.shape, np.uint8)
    for dx, dy in _DIRECTIONS:
        hit = np.zeros_like(bone)
        for step in range(1, reach_voxels + 1):
            hit |= _shifted(bone, dx * step, dy * step)
        score += hit
    return score


def _slice_candidates(
    enclosed: np.ndarray, body: np.ndarray, spacing_mm: float
) -> list[list[tuple[float, float, float]]]:
    """Per axial slice, the enclosed soft-tissue regions where a canal can be: (x, y, area_mm2)."""
    nx, ny, nz = enclosed.shape
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    out: list[list[tuple[float, float, float]]] = []
    for k in range(nz):
        body_k = body[:, :, k]
        found: list[tuple[float, float, float]] = []
        if body_k.sum() >= 100:
            bx, by = np.nonzero(body_k)
            centre_x = bx.mean()
            y0, y1 = by.min(), by.max()
            window = (np.abs(xs - centre_x) * spacing_mm <= SEARCH_HALF_WIDTH_MM) & (
                (ys - y0) / max(y1 - y0, 1) >= SEARCH_MIN_DEPTH
            )
            regions = enclosed[:, :, k] & window
            labels, count = ndimage.label(regions)
            if count:
                index = np.arange(1, count + 1)
                areas = ndimage.sum(regions, labels, index) * spacing_mm**2
                centres = ndimage.center_of_mass(regions, labels, index)
                found = [
                    (float(c[0]), float(c[1]), float(a))
                    for c, a in zip(centres, areas, strict=True)
                    if a >= MIN_CANAL_AREA_MM2
                ]
        out.append(found)
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
    enclosed = soft & (enclosure_score(bone, reach) >= MIN_ENCLOSING_DIRECTIONS)
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


def _longest_run(path: np.ndarray, max_gap: int) -> np.ndarray:
    """The longest stretch of ``path`` (rows k, x, y) with no gap in k above ``max_gap``."""
    if len(path) == 0:
        return path
    breaks = np.flatnonzero(np.diff(path[:, 0]) > max_gap) + 1
    runs = np.split(path, breaks)
    return max(runs, key=len)
