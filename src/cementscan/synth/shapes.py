"""Signed-distance shapes in LPS millimetres (primitives and CSG) that phantoms are built from.

Every shape returns, for points (x, y, z) in mm, a value that is negative inside, positive
outside, and whose magnitude never exceeds the true Euclidean distance to the surface
(a distance *bound*). The renderer relies on that bound: a voxel whose centre is farther
from the surface than half its diagonal is wholly inside or outside, so only voxels near a
surface need supersampling. min/max CSG keeps the bound property.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
BBox = tuple[np.ndarray, np.ndarray]


def _bbox(lo: object, hi: object) -> BBox:
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


class Shape:
    """Base class: ``sdf(x, y, z)`` on broadcastable float arrays and an LPS-mm ``bbox``."""

    def sdf(self, x: Array, y: Array, z: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def bbox(self) -> BBox:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Ellipsoid(Shape):
    """An ellipsoid with semi-axes ``radii_mm`` along the columns of ``rotation`` (default LPS axes)."""

    center: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    rotation: np.ndarray | None = None

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        cx, cy, cz = (float(c) for c in self.center)
        dx, dy, dz = x - cx, y - cy, z - cz
        if self.rotation is not None:
            r = self.rotation.tolist()
            dx, dy, dz = (
                r[0][0] * dx + r[1][0] * dy + r[2][0] * dz,
                r[0][1] * dx + r[1][1] * dy + r[2][1] * dz,
                r[0][2] * dx + r[1][2] * dy + r[2][2] * dz,
            )
        a, b, c = (float(r) for r in self.radii_mm)
        k = np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2)
        # Distances in the unit-sphere space shrink by at most min(radius) when mapped back.
        return (k - 1.0) * min(a, b, c)

    def bbox(self) -> BBox:
        c = np.asarray(self.center, dtype=float)
        radii = np.asarray(self.radii_mm, dtype=float)
        if self.rotation is None:
            ext = radii
        else:
            ext = np.abs(self.rotation) @ radii
        return _bbox(c - ext, c + ext)


@dataclass
class EllipticSlab(Shape):
    """An elliptic cylinder along z, cut to ``z_lo``..``z_hi`` (vertebral bodies, discs)."""

    center_xy: tuple[float, float]
    radii_xy_mm: tuple[float, float]
    z_lo: float
    z_hi: float

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        a, b = (float(r) for r in self.radii_xy_mm)
        cx, cy = (float(c) for c in self.center_xy)
        k = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
        d_xy = (k - 1.0) * min(a, b)
        zc = float(0.5 * (self.z_lo + self.z_hi))
        d_z = np.abs(z - zc) - float(0.5 * (self.z_hi - self.z_lo))
        return np.maximum(d_xy, d_z)

    def bbox(self) -> BBox:
        (cx, cy), (a, b) = self.center_xy, self.radii_xy_mm
        return _bbox((cx - a, cy - b, self.z_lo), (cx + a, cy + b, self.z_hi))


@dataclass
class ProfiledCylinder(Shape):
    """A z-extruded ellipse whose centre and semi-axes vary with z (piecewise linear knots).

    Used for the body outline and the cavities inside it; the profile changes slowly with z,
    so the per-slice ellipse bound stays a bound to within a fraction of a millimetre.
    """

    z_knots: tuple[float, ...]
    cx: tuple[float, ...]
    cy: tuple[float, ...]
    ax: tuple[float, ...]
    ay: tuple[float, ...]
    z_lo: float
    z_hi: float

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        zk = np.asarray(self.z_knots)
        dt = np.result_type(z, np.float32)
        cx = np.interp(z, zk, self.cx).astype(dt)
        cy = np.interp(z, zk, self.cy).astype(dt)
        ax = np.interp(z, zk, self.ax).astype(dt)
        ay = np.interp(z, zk, self.ay).astype(dt)
        k = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        d_xy = (k - 1.0) * np.minimum(ax, ay)
        zc = float(0.5 * (self.z_lo + self.z_hi))
        d_z = np.abs(z - zc) - float(0.5 * (self.z_hi - self.z_lo))
        return np.maximum(d_xy, d_z)

    def bbox(self) -> BBox:
        cx, cy, ax, ay = (np.asarray(v) for v in (self.cx, self.cy, self.ax, self.ay))
        return _bbox(
            (float(np.min(cx - ax)), float(np.min(cy - ay)), self.z_lo),
            (float(np.max(cx + ax)), float(np.max(cy + ay)), self.z_hi),
        )

    def shrunk(self, by_mm: float) -> ProfiledCylinder:
        """The same profile with every semi-axis reduced by ``by_mm`` (an inner wall)."""
        return ProfiledCylinder(
            self.z_knots,
            self.cx,
            self.cy,
            tuple(max(a - by_mm, 1.0) for a in self.ax),
            tuple(max(a - by_mm, 1.0) for a in self.ay),
            self.z_lo,
            self.z_hi,
        )


@dataclass
class Tube(Shape):
    """A polyline with a radius at each vertex (linear in between): vessels, ribs, casts."""

    points: np.ndarray  # (n, 3) LPS mm
    radii_mm: np.ndarray  # (n,)
    _seg: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 3)
        self.radii_mm = np.broadcast_to(
            np.asarray(self.radii_mm, dtype=float), (len(self.points),)
        ).copy()
        if len(self.points) < 2:
            raise ValueError("a tube needs at least two points")

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        out: Array | None = None
        pts, rad = self.points.tolist(), self.radii_mm.tolist()
        for s in range(len(pts) - 1):
            a, b = pts[s], pts[s + 1]
            ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]]
            den = (ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2]) or 1e-9
            px, py, pz = x - a[0], y - a[1], z - a[2]
            t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / den, 0.0, 1.0)
            qx, qy, qz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
            # A round cone's exact distance is costlier; the radius changes slowly along
            # every tube used here, so sphere-swept distance is within a bound's tolerance.
            d = np.sqrt(qx * qx + qy * qy + qz * qz) - (rad[s] + t * (rad[s + 1] - rad[s]))
            out = d if out is None else np.minimum(out, d)
        assert out is not None
        return out

    def bbox(self) -> BBox:
        r = self.radii_mm[:, None]
        return _bbox((self.points - r).min(axis=0), (self.points + r).max(axis=0))

    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


@dataclass
class HalfSpace(Shape):
    """Points with ``normal · p <= offset`` (normal is normalised); bbox is given explicitly."""

    normal: tuple[float, float, float]
    offset: float
    box: BBox

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        n = np.asarray(self.normal, dtype=float)
        nx, ny, nz = (n / np.linalg.norm(n)).tolist()
        return x * nx + y * ny + z * nz - float(self.offset)

    def bbox(self) -> BBox:
        return self.box


@dataclass
class Union(Shape):
    parts: tuple[Shape, ...]

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        out = self.parts[0].sdf(x, y, z)
        for part in self.parts[1:]:
            out = np.minimum(out, part.sdf(x, y, z))
        return out

    def bbox(self) -> BBox:
        boxes = [p.bbox() for p in self.parts]
        return _bbox(np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0))


@dataclass
class Intersect(Shape):
    parts: tuple[Shape, ...]

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        out = self.parts[0].sdf(x, y, z)
        for part in self.parts[1:]:
            out = np.maximum(out, part.sdf(x, y, z))
        return out

    def bbox(self) -> BBox:
        boxes = [p.bbox() for p in self.parts]
        return _bbox(np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0))


@dataclass
class Subtract(Shape):
    """``base`` minus every shape in ``holes``."""

    base: Shape
    holes: tuple[Shape, ...]

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        out = self.base.sdf(x, y, z)
        for hole in self.holes:
            out = np.maximum(out, -hole.sdf(x, y, z))
        return out

    def bbox(self) -> BBox:
        return self.base.bbox()


def rotation_from_axis(axis: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """An orthonormal 3x3 matrix whose first column is ``axis`` (normalised)."""
    u = np.asarray(axis, dtype=float)
    u = u / np.linalg.norm(u)
    helper = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    v = np.cross(u, helper)
    v /= np.linalg.norm(v)
    w = np.cross(u, v)
    return np.stack([u, v, w], axis=1)


def sample_inside(shape: Shape, step_mm: float = 0.5) -> tuple[np.ndarray, float]:
    """Points (n, 3) on a fine grid inside ``shape`` and the volume (mL) each one stands for.

    Truth measurements (volume, centroid, length) come from this fine sampling of the
    physical shape, independent of any CT grid.
    """
    lo, hi = shape.bbox()
    axes = [np.arange(lo[a] + step_mm / 2, hi[a], step_mm) for a in range(3)]
    if any(len(ax) == 0 for ax in axes):
        return np.zeros((0, 3)), step_mm**3 / 1000.0
    chunks = []
    for kz in range(0, len(axes[2]), 32):
        zs = axes[2][kz : kz + 32]
        d = shape.sdf(axes[0][:, None, None], axes[1][None, :, None], zs[None, None, :])
        idx = np.nonzero(d < 0)
        chunks.append(np.stack([axes[0][idx[0]], axes[1][idx[1]], zs[idx[2]]], axis=1))
    pts = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 3))
    return pts, step_mm**3 / 1000.0
