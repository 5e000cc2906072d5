"""Cement truth objects: intravertebral fills, leaks by category, IVC/azygos casts, heart, emboli.

Cement HU is a spec parameter: no measured HU of PMMA with BaSO4/ZrO2 was found
(clinical-evidence.md §4, UNCONFIRMED), so the default is drawn from 1200-3000 HU.
Pieces of one cast are disjoint shapes (each later piece subtracts the upstream ones) that
touch, so the cast is one connected component split into findings as DESIGN.md §4 says.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from cementscan.synth.shapes import Ellipsoid, EllipticSlab, Intersect, Shape, Subtract, Tube, Union
from cementscan.synth.spec import CEMENT_HU_RANGE, PhantomSpec
from cementscan.synth.torso import (
    Layout,
    Vertebra,
    foramen_center,
    right_atrium_center,
    right_ventricle_center,
)
from cementscan.synth.truth import TruthObject, side_of
from cementscan.synth.vessels import (
    AZYGOS_RADIUS_MM,
    IVC_RADIUS_MM,
    PASegment,
    Vessels,
    segmental_vein_path,
)

DEFAULT_LEAK_VOLUME_ML = {
    "disc": 0.8,
    "epidural": 0.35,
    "foraminal": 0.25,
    "paravertebral_soft_tissue": 1.0,
}
# A leak's truth starts this far inside the body's surface, in its cortex; deeper, the tract that
# joins it to the fill is more of the fill (leave_body).
CORTEX_MM = 1.3
YEOM = {"disc": "D", "epidural": "B", "foraminal": "C", "paravertebral_soft_tissue": "C",
        "paravertebral_vein": "S", "azygos": "S"}  # fmt: skip


def _volume_ml(shape: Shape, step_mm: float = 0.6) -> float:
    from cementscan.synth.shapes import sample_inside

    pts, per = sample_inside(shape, step_mm)
    return len(pts) * per


def fit_volume(
    make: Callable[[float], Shape], target_ml: float, lo: float = 0.2, hi: float = 3.0
) -> Shape:
    """The shape ``make(s)`` whose volume is closest to ``target_ml`` (bisection on scale s)."""
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        if _volume_ml(make(mid)) < target_ml:
            lo = mid
        else:
            hi = mid
    return make(0.5 * (lo + hi))


def leave_body(leak: Shape, fill: TruthObject, body: Shape) -> Shape:
    """The part of ``leak`` outside ``body``; the part inside joins ``fill`` (re-measured).

    A tract drawn from the fill's centre crosses the body's bone before it leaves: cement inside a
    vertebral body is intravertebral (DESIGN.md §4), so the leak's truth starts at the cortex.
    """
    fill.shape = Union((fill.shape, Intersect((leak, body))))
    fill.measure()
    return Subtract(leak, (body,))


def blob(
    center: np.ndarray, radii: np.ndarray, rng: np.random.Generator, n: int = 5
) -> Callable[[float], Shape]:
    """An irregular amorphous blob (union of jittered ellipsoids) as a function of scale."""
    offsets = rng.uniform(-0.45, 0.45, size=(n, 3)) * radii
    offsets[0] = 0.0
    sizes = rng.uniform(0.45, 0.8, size=(n, 3)) * radii
    sizes[0] = radii * 0.75

    def make(s: float) -> Shape:
        return Union(
            tuple(
                Ellipsoid(tuple(center + s * o), tuple(s * r))
                for o, r in zip(offsets, sizes, strict=True)
            )
        )

    return make


class CementBuilder:
    """Builds every cement truth object of a spec, numbering them from 1."""

    def __init__(
        self, spec: PhantomSpec, layout: Layout, vessels: Vessels, rng: np.random.Generator
    ):
        self.spec, self.layout, self.vessels, self.rng = spec, layout, vessels, rng
        self.objects: list[TruthObject] = []
        self.by_level: dict[str, TruthObject] = {}
        self.warnings: list[str] = []

    def _new(self, **kwargs: object) -> TruthObject:
        obj = TruthObject(id=len(self.objects) + 1, **kwargs)  # type: ignore[arg-type]
        obj.measure()
        if obj.side == "" or obj.side is None:
            obj.side = side_of(obj.centroid_lps_mm[0])
        self.objects.append(obj)
        return obj

    def _hu(self, value: float | None) -> float:
        return float(value) if value is not None else float(self.rng.uniform(*CEMENT_HU_RANGE))

    def build(self) -> list[TruthObject]:
        for iv in self.spec.intravertebral:
            self.intravertebral(iv.level, iv.volume_ml, self._hu(iv.hu), iv.side)
        for leak in self.spec.leaks:
            self.leak(leak)
        if self.spec.right_heart is not None:
            self.right_heart()
        if self.spec.emboli.count:
            self.emboli()
        return self.objects

    # -- intravertebral -------------------------------------------------------------------
    def intravertebral(self, level: str, volume_ml: float, hu: float, side: str,
                       note: str | None = None, center: np.ndarray | None = None) -> TruthObject:  # fmt: skip
        v = self.layout.vertebrae[level]
        sx = {"right": -1.0, "left": 1.0, "midline": 0.0}[side]
        if center is None:
            center = np.array([sx * 0.38 * v.ax_mm, v.y_mm - 0.1 * v.ay_mm, v.z_mm])
        radii = np.array([v.ax_mm * (0.45 if sx else 0.7), v.ay_mm * 0.6, (v.z_hi - v.z_lo) * 0.42])
        interior = v.body(2.0)
        make = blob(center, radii, self.rng, 6)
        shape = fit_volume(lambda s: Intersect((make(s), interior)), volume_ml)
        obj = self._new(category="intravertebral", shape_kind="amorphous", shape=shape, hu=hu,
                        side="", level=level, note=note)  # fmt: skip
        obj.extra["fill_side"] = side
        if abs(obj.volume_ml - volume_ml) > 0.15 * volume_ml:
            self.warnings.append(f"{level}: intravertebral cement {obj.volume_ml:.2f} mL "
                                 f"(asked {volume_ml:.2f} mL; the body is too small)")  # fmt: skip
        self.by_level.setdefault(level, obj)
        return obj

    # -- leaks ----------------------------------------------------------------------------
    def leak(self, leak: object) -> None:
        from cementscan.synth.spec import LeakSpec

        assert isinstance(leak, LeakSpec)
        src = self.by_level[leak.level]
        v = self.layout.vertebrae[leak.level]
        hu = self._hu(leak.hu) if leak.hu is not None else src.hu
        sx = {"right": -1.0, "left": 1.0, "midline": 0.0}[leak.side]
        c0 = np.asarray(src.centroid_lps_mm)
        cat = leak.category
        if cat in DEFAULT_LEAK_VOLUME_ML:
            volume = leak.volume_ml or DEFAULT_LEAK_VOLUME_ML[cat]
            region, center, radii = self._leak_region(cat, v, leak.direction, sx)
            make = blob(center, radii, self.rng, 4)
            main = fit_volume(lambda s: Intersect((make(s), region)), volume)
            bridge = Tube(np.array([c0, center]), np.array([1.6, 1.6]))
            shape: Shape = Subtract(Union((main, bridge)), (src.shape,))
            shape = leave_body(shape, src, v.body(CORTEX_MM))
            self._new(category=cat, shape_kind="amorphous", shape=shape, hu=hu, side="",
                      level=leak.level, yeom_type=YEOM[cat], connected_to=src.id)  # fmt: skip
            return
        vein_side = leak.side if leak.side != "midline" else "right"
        path = segmental_vein_path(self.layout, self.vessels, leak.level, vein_side)
        pts = np.vstack([c0, path])
        reaches_ivc = cat == "paravertebral_vein" and leak.ivc_to_level is not None
        lumen: Shape | None = None
        if reaches_ivc:
            lumen = Tube(self.vessels.ivc, np.full(len(self.vessels.ivc), IVC_RADIUS_MM - 0.8))
        elif cat == "azygos":
            lumen = Tube(
                self.vessels.azygos, np.full(len(self.vessels.azygos), AZYGOS_RADIUS_MM - 0.6)
            )
        else:
            # The tract fades out in the paravertebral plexus before it reaches a large vein.
            pts[-1] = pts[-2] + 0.6 * (pts[-1] - pts[-2])
        if leak.length_mm is not None and not reaches_ivc and cat != "azygos":
            pts = trim_path(pts, leak.length_mm)
        tube = Tube(pts, np.full(len(pts), 2.0))
        holes: tuple[Shape, ...] = (src.shape,) if lumen is None else (src.shape, lumen)
        inside = v.body(CORTEX_MM)
        outside = leave_body(Subtract(tube, holes), src, inside)
        holes = (*holes, inside)
        vein = self._new(category="paravertebral_vein", shape_kind="linear", shape=outside,
                         hu=hu, side="", level=leak.level, yeom_type="S", connected_to=src.id)  # fmt: skip
        vein.length_mm = length_outside_mm(pts, holes)
        if reaches_ivc:
            assert lumen is not None and leak.ivc_to_level is not None
            top = self.layout.vertebrae[leak.ivc_to_level].z_mm + 4.0
            self._vessel_cast("ivc", lumen, float(path[-1][2]) - 6.0, top, hu, vein.id, 3.6,
                              self.vessels.ivc_point_at, np.array([4.0, 3.0, 0.0]), tube)  # fmt: skip
        elif cat == "azygos":
            assert lumen is not None
            z0 = float(path[-1][2]) - 3.0
            length = leak.length_mm or 35.0
            self._vessel_cast("azygos", lumen, z0, z0 + length, hu, vein.id, 2.4,
                              self.vessels.azygos_point_at, np.zeros(3), tube)  # fmt: skip

    def _leak_region(self, cat: str, v: Vertebra, direction: str, sx: float
                     ) -> tuple[Shape, np.ndarray, np.ndarray]:  # fmt: skip
        names = self.layout.level_names()
        i = names.index(v.level)
        if cat == "disc":
            other = self.layout.vertebrae[names[i + 1] if direction == "caudal" else names[i - 1]]
            lo, hi = (other.z_hi, v.z_lo) if direction == "caudal" else (v.z_hi, other.z_lo)
            region = EllipticSlab((0.0, v.y_mm), (v.ax_mm - 3.0, v.ay_mm - 3.0), lo - 0.3, hi + 0.3)
            center = np.array([sx * 0.3 * v.ax_mm, v.y_mm - 0.1 * v.ay_mm, 0.5 * (lo + hi)])
            return region, center, np.array([v.ax_mm * 0.45, v.ay_mm * 0.45, (hi - lo) * 0.6])
        if cat == "epidural":
            canal = EllipticSlab((0.0, v.canal_y_mm), (v.canal_rx_mm - 0.5, v.canal_ry_mm - 0.5),
                                 v.z_lo - 6.0, v.z_hi + 6.0)  # fmt: skip
            center = np.array([sx * 3.0, v.canal_y_mm - v.canal_ry_mm * 0.55, v.z_mm])
            return canal, center, np.array([6.0, 2.5, 8.0])
        if cat == "foraminal":
            side = "right" if sx <= 0 else "left"
            upper = v.level
            center = foramen_center(self.layout, upper, side)
            return Ellipsoid(tuple(center), (4.5, 5.0, 6.0)), center, np.array([3.0, 3.5, 4.0])
        # paravertebral soft tissue: lateral (or prevertebral when midline) to the body
        if sx == 0.0:
            center = np.array([0.0, v.front_y_mm - 7.0, v.z_mm])
        else:
            center = np.array([sx * (v.ax_mm + 7.0), v.y_mm - 0.3 * v.ay_mm, v.z_mm])
        return Ellipsoid(tuple(center), (14.0, 14.0, 16.0)), center, np.array([7.0, 8.0, 9.0])

    def _vessel_cast(self, category: str, lumen: Shape, z0: float, z1: float, hu: float, upstream: int,
                     radius: float, point_at: Callable[[float], np.ndarray], offset: np.ndarray,
                     inflow: Shape) -> None:  # fmt: skip
        """A cast in a vein's lumen, including the inflowing tract's part inside the lumen."""
        zs = np.linspace(z0, z1, max(3, int((z1 - z0) / 12.0) + 1))
        pts = np.array([point_at(z) + offset for z in zs])
        pts[1:-1, :2] += self.rng.normal(0.0, 0.8, size=(len(pts) - 2, 2))
        radii = np.clip(
            radius + self.rng.normal(0.0, 0.4, size=len(pts)), radius * 0.7, radius * 1.3
        )
        shape = Intersect((Union((Tube(pts, radii), inflow)), lumen))
        cast = self._new(category=category, shape_kind="cast", shape=shape,
                         hu=hu, side="", yeom_type=None, connected_to=upstream)  # fmt: skip
        cast.length_mm = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum() + radius)
        cast.extra["z_range_mm"] = [round(z0 - radius, 2), round(z1 + radius, 2)]
        cast.level = self.layout.nearest_level(cast.centroid_lps_mm[2])

    # -- heart and lungs -------------------------------------------------------------------
    def right_heart(self) -> None:
        rh = self.spec.right_heart
        assert rh is not None
        ra = rh.chamber == "right_atrium"
        c = right_atrium_center(self.layout) if ra else right_ventricle_center(self.layout)
        chamber = Ellipsoid(tuple(c), (20.0, 20.0, 26.0) if ra else (28.0, 12.0, 26.0))
        hu = self._hu(rh.hu)
        if rh.shape == "linear":
            d = np.array([0.3, -0.25, 0.92])
            d /= np.linalg.norm(d)
            half = 0.5 * rh.length_mm
            shape: Shape = Intersect(
                (Tube(np.array([c - half * d, c + half * d]), np.array([1.8, 1.5])), chamber)
            )
            length: float | None = rh.length_mm
        else:
            r = min(0.5 * rh.length_mm, 8.0)
            shape = Ellipsoid(tuple(c), (r, r * 0.85, r))
            length = 2.0 * r
        self._new(category="right_heart", shape_kind=rh.shape, shape=shape, hu=hu, side="",
                  length_mm=length, note=rh.chamber)  # fmt: skip

    def emboli(self) -> None:
        es = self.spec.emboli
        sep = es.min_separation_mm
        if sep is None:
            sep = 2.0 * max(s.slice_mm or self.spec.slice_mm for s in self.spec.series)
        hu = (
            float(es.hu)
            if es.hu is not None
            else (self.objects[0].hu if self.objects else self._hu(None))
        )
        n = es.count
        if es.side == "bilateral":
            n_right = round(n * es.right_fraction)
            if n >= 2:
                n_right = min(max(n_right, 1), n - 1)
            sides = ["right"] * n_right + ["left"] * (n - n_right)
        else:
            sides = [es.side] * n
        placed: list[tuple[np.ndarray, np.ndarray]] = []  # centreline points, radii
        tree = self.vessels.pa_tree
        for k, side in enumerate(sides):
            central = k < es.central
            kind = es.shape if es.shape != "mixed" else ("linear" if k % 2 == 0 else "nodular")
            if central:
                kind = "linear"
            if es.zone == "diffuse":
                zone = None
            else:
                zone = es.zone if self.rng.uniform() < es.zone_fraction or k == 0 else None
            if central:
                cands = [s for s in tree if s.generation == 0 and s.side == side]
                cands += [
                    s for s in self.vessels.pa_central if s.side == side and s.generation == -1
                ]
            else:
                cands = [
                    s
                    for s in tree
                    if 1.0 <= s.radius_mm <= 3.2 and s.length_mm >= 7.0 and s.side == side
                ]
            ok = self._place_embolus(cands, zone, kind, central, hu, sep, placed)
            if not ok and zone is not None:
                ok = self._place_embolus(cands, None, kind, central, hu, sep, placed)
            if not ok:
                self.warnings.append(
                    f"embolus {k + 1} ({side}) could not be placed {sep:.1f} mm apart"
                )

    def _place_embolus(self, cands: list[PASegment], zone: str | None, kind: str, central: bool,
                       hu: float, sep: float, placed: list[tuple[np.ndarray, np.ndarray]]) -> bool:  # fmt: skip
        order = self.rng.permutation(len(cands))
        for idx in order:
            seg = cands[int(idx)]
            mid_z = 0.5 * (seg.p0[2] + seg.p1[2])
            if zone is not None and self.layout.lung_zone(seg.side, mid_z) != zone:
                continue
            d = (seg.p1 - seg.p0) / seg.length_mm
            if kind == "linear":
                if central:
                    r = min(seg.radius_mm * 0.45, 3.0)
                    length = float(self.rng.uniform(12.0, 20.0))
                else:
                    r = max(seg.radius_mm * 0.9, 1.05)
                    length = float(self.rng.uniform(6.0, 16.0))
                length = min(length, seg.length_mm * 0.9)
                if length < 5.5:
                    continue
                t0 = float(self.rng.uniform(0.0, seg.length_mm - length))
                a = seg.p0 + d * t0
                b = a + d * length
                line = np.linspace(a, b, 6)
                radii = np.full(6, r)
                shape: Shape = Tube(np.array([a, b]), np.array([r, r * 0.95]))
                total = length + 2 * r
            else:
                r = float(self.rng.uniform(1.6, 2.6))
                c = seg.p0 + d * float(self.rng.uniform(0.3, 0.7)) * seg.length_mm
                line, radii = c[None, :], np.array([r])
                shape = Ellipsoid(tuple(c), (r, r, r))
                total = 2 * r
            if any(tube_gap_mm(line, radii, p, pr) < sep for p, pr in placed):
                continue
            lung = self.layout.lung_shapes[seg.side]
            if _depth(lung, line).min() < radii.max() + 0.5:
                continue
            obj = self._new(category="pulmonary_artery", shape_kind=kind, shape=shape, hu=hu, side=seg.side,
                            central=bool(central), length_mm=total)  # fmt: skip
            obj.lung_zone = self.layout.lung_zone(seg.side, obj.centroid_lps_mm[2])
            obj.extra["lobe"] = seg.lobe
            obj.extra["vessel_radius_mm"] = round(seg.radius_mm, 2)
            placed.append((line, radii))
            return True
        return False


def tube_gap_mm(a: np.ndarray, ra: np.ndarray, b: np.ndarray, rb: np.ndarray) -> float:
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2) - ra[:, None] - rb[None, :]
    return float(d.min())


def _depth(shape: Shape, pts: np.ndarray) -> np.ndarray:
    return -np.asarray(shape.sdf(pts[:, 0], pts[:, 1], pts[:, 2]))


def trim_path(pts: np.ndarray, length_mm: float) -> np.ndarray:
    out = [pts[0]]
    left = length_mm
    for a, b in itertools.pairwise(pts):
        seg = float(np.linalg.norm(b - a))
        if seg >= left:
            out.append(a + (b - a) * left / seg)
            break
        out.append(b)
        left -= seg
    return np.array(out)


def length_outside_mm(pts: np.ndarray, holes: tuple[Shape, ...]) -> float:
    """Centreline length of a tube outside the given shapes (dense sampling)."""
    dense = np.vstack([np.linspace(a, b, 40, endpoint=False) for a, b in itertools.pairwise(pts)])
    outside = np.ones(len(dense), dtype=bool)
    for h in holes:
        outside &= np.asarray(h.sdf(dense[:, 0], dense[:, 1], dense[:, 2])) > 0
    steps = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    return float((steps * outside[1:]).sum())
