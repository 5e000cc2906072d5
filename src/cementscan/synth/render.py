"""Partial-volume rasterisation of signed-distance shapes onto an LPS-aligned voxel grid.

Each voxel is a box ``spacing_mm`` wide (the z side is the slice thickness, so a shape is
averaged over the slab). Voxels whose centre lies farther from a shape's surface than half
the box diagonal are wholly in or out; only the thin band near the surface is supersampled.
Painting is "over" compositing: ``hu += coverage * (material_hu - hu)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cementscan.synth.shapes import Shape

_CHUNK_VOXELS = 2_000_000
_BAND_CHUNK = 40_000


@dataclass(frozen=True)
class Grid:
    """An LPS-aligned grid: voxel (i, j, k) centre = origin + (i, j, k) * spacing (mm)."""

    origin_lps_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    shape: tuple[int, int, int]

    def axis_mm(self, axis: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        n = self.shape[axis] if hi is None else hi
        return self.origin_lps_mm[axis] + np.arange(lo, n) * self.spacing_mm[axis]

    def index_range(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[slice, ...] | None:
        """Index slices of voxels whose boxes may touch the LPS box [lo_mm, hi_mm]."""
        out = []
        for a in range(3):
            o, s, n = self.origin_lps_mm[a], self.spacing_mm[a], self.shape[a]
            i0 = max(math.floor((lo_mm[a] - o) / s - 0.5), 0)
            i1 = min(math.ceil((hi_mm[a] - o) / s + 0.5) + 1, n)
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)


def _subsample_offsets(spacing_mm: tuple[float, float, float], fine: bool) -> np.ndarray:
    """Sub-voxel sample offsets (S, 3) spread over the voxel box (the slab in z).

    Small shapes (thin vessels, emboli) get ~0.5 mm in-plane and ~0.75 mm through-slab
    sampling; large smooth shapes (body wall, lungs) a coarser 2-3 per axis, which is
    ample for a surface much larger than the voxel.
    """
    dx, dy, dz = spacing_mm
    if fine:
        nx = int(np.clip(math.ceil(dx / 0.5), 2, 4))
        ny = int(np.clip(math.ceil(dy / 0.5), 2, 4))
        nz = int(np.clip(math.ceil(dz / 0.75), 2, 6))
    else:
        nx = int(np.clip(math.ceil(dx / 1.0), 2, 3))
        ny = int(np.clip(math.ceil(dy / 1.0), 2, 3))
        nz = int(np.clip(math.ceil(dz / 1.5), 2, 3))
    fx = ((np.arange(nx) + 0.5) / nx - 0.5) * dx
    fy = ((np.arange(ny) + 0.5) / ny - 0.5) * dy
    fz = ((np.arange(nz) + 0.5) / nz - 0.5) * dz
    ox, oy, oz = np.meshgrid(fx, fy, fz, indexing="ij")
    return np.stack([ox.ravel(), oy.ravel(), oz.ravel()], axis=1).astype(np.float32)


def coverage(shape: Shape, grid: Grid) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Fraction (float32, 0..1) of each voxel box inside ``shape``, on the shape's crop.

    Returns the crop's index slices and the coverage array, or None when the shape misses
    the grid.
    """
    lo, hi = shape.bbox()
    crop = grid.index_range(lo, hi)
    if crop is None:
        return None
    xs = grid.axis_mm(0, crop[0].start, crop[0].stop).astype(np.float32)
    ys = grid.axis_mm(1, crop[1].start, crop[1].stop).astype(np.float32)
    zs = grid.axis_mm(2, crop[2].start, crop[2].stop).astype(np.float32)
    dx, dy, dz = grid.spacing_mm
    # A voxel centre farther than this from the surface cannot have a partial box.
    band_mm = 0.5 * math.sqrt(dx * dx + dy * dy + dz * dz) * 1.1 + 0.05
    fine = float(np.min(hi - lo)) < 25.0
    offsets = _subsample_offsets(grid.spacing_mm, fine)
    cov = np.empty((len(xs), len(ys), len(zs)), dtype=np.float32)
    step = max(1, _CHUNK_VOXELS // max(1, len(xs) * len(ys)))
    for k0 in range(0, len(zs), step):
        zc = zs[k0 : k0 + step]
        d = shape.sdf(xs[:, None, None], ys[None, :, None], zc[None, None, :])
        d = np.broadcast_to(d, (len(xs), len(ys), len(zc)))
        block = (d < 0).astype(np.float32)
        bi, bj, bk = np.nonzero(np.abs(d) < band_mm)
        for b0 in range(0, len(bi), _BAND_CHUNK):
            ii, jj, kk = (
                bi[b0 : b0 + _BAND_CHUNK],
                bj[b0 : b0 + _BAND_CHUNK],
                bk[b0 : b0 + _BAND_CHUNK],
            )
            px = xs[ii][:, None] + offsets[None, :, 0]
            py = ys[jj][:, None] + offsets[None, :, 1]
            pz = zc[kk][:, None] + offsets[None, :, 2]
            inside = shape.sdf(px, py, pz) < 0
            block[ii, jj, kk] = inside.mean(axis=1)
        cov[:, :, k0 : k0 + step] = block
    return crop, cov


class Canvas:
    """The HU field and the three label maps of one series while a scene is painted."""

    def __init__(self, grid: Grid, background_hu: float = -1000.0) -> None:
        self.grid = grid
        self.hu = np.full(grid.shape, background_hu, dtype=np.float32)
        self.anatomy = np.zeros(grid.shape, dtype=np.uint16)
        self.truth = np.zeros(grid.shape, dtype=np.uint16)
        self.confounder = np.zeros(grid.shape, dtype=np.uint16)

    def paint(
        self,
        shape: Shape,
        material_hu: float,
        *,
        anatomy: int = 0,
        truth: int = 0,
        confounder: int = 0,
        clears_truth: bool = False,
    ) -> tuple[tuple[slice, ...], np.ndarray] | None:
        """Composite ``shape`` with ``material_hu`` and write its labels where it dominates.

        An anatomy label goes where the voxel is at least half covered, a truth or confounder
        label from 30% coverage; an object thinner than that everywhere (a 1 mm embolus in a
        5 mm slice) is labelled where its coverage is at least half its own maximum, so that no
        object vanishes from the map.
        """
        result = coverage(shape, self.grid)
        if result is None:
            return None
        crop, cov = result
        peak = float(cov.max(initial=0.0))
        if peak <= 0.0:
            return None
        view = self.hu[crop]
        view += cov * (np.float32(material_hu) - view)
        major = cov >= 0.5
        if anatomy:
            self.anatomy[crop][major] = anatomy
        if truth or confounder:
            # Dense material shows even at a third of a voxel (2000 HU cement at 30% gives
            # ~600 HU), so truth labels take voxels from 30% coverage: thin tracts stay
            # connected in the label map as they are in the image.
            owned = owned_voxels(cov)
            if truth:
                self.truth[crop][owned] = truth
            if confounder:
                self.confounder[crop][owned] = confounder
        if clears_truth:  # metal replaces cement wherever it takes an appreciable share
            self.truth[crop][cov > 0.0] = 0
        return crop, cov


OWN_FRACTION = 0.3  # truth/confounder labels take voxels from 30% coverage (see Canvas.paint)


def owned_voxels(cov: np.ndarray) -> np.ndarray:
    """Voxels an object's label owns: coverage >= 30%, or, for an object thinner than that
    everywhere (a 1 mm embolus in a 5 mm slice), coverage >= half its own peak."""
    peak = float(cov.max(initial=0.0))
    return cov >= OWN_FRACTION if peak >= OWN_FRACTION else cov >= 0.5 * peak


@dataclass
class Layer:
    """One paint step of a scene: a shape, its material and the labels it writes."""

    shape: Shape
    hu: float
    anatomy: str | None = None
    truth: int = 0
    confounder: int = 0
    clears_truth: bool = False
    streak_hu: float = 0.0  # metal: amplitude of the streak artefact it casts


class Scene:
    """The physical phantom as an ordered list of layers, rendered onto any grid."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.anatomy_ids: dict[str, int] = {}

    def add(self, shape: Shape, hu: float, anatomy: str | None = None, **kwargs: object) -> None:
        if anatomy is not None and anatomy not in self.anatomy_ids:
            self.anatomy_ids[anatomy] = len(self.anatomy_ids) + 1
        self.layers.append(Layer(shape, hu, anatomy, **kwargs))  # type: ignore[arg-type]

    def tubes(
        self,
        points: np.ndarray,
        radii: np.ndarray | float,
        hu: float,
        anatomy: str | None,
        **kwargs: object,
    ) -> None:
        """A long tube painted segment by segment, so each segment renders on its own crop."""
        from cementscan.synth.shapes import Tube

        pts = np.asarray(points, dtype=float)
        rad = np.broadcast_to(np.asarray(radii, dtype=float), (len(pts),))
        for s in range(len(pts) - 1):
            self.add(Tube(pts[s : s + 2], rad[s : s + 2]), hu, anatomy, **kwargs)
