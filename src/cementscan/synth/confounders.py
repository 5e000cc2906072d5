"""Cement look-alikes: calcifications, osteophytes, metal (screws, clips, IVC filter), dense contrast.

HU choices (clinical-evidence.md §4, "Reference values for confounders"): generic
calcification +100..+400 and calcified nodules >= 164 HU (Siegelman 1980), dense plaques
and granulomas drawn up to ~1000 HU so they overlap cement's lower range on purpose;
titanium pedicle screws ~6,500 HU and steel above the 3,071 HU top of the standard scale
(both clip at 3,071 after rendering); undiluted venous contrast well above arterial
enhancement (>350 HU significant in CTPA) - we use 1,500-2,500 HU to overlap cement.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cementscan.synth.cement import blob, fit_volume
from cementscan.synth.shapes import (
    Ellipsoid,
    Intersect,
    Shape,
    Subtract,
    Tube,
    Union,
    rotation_from_axis,
)
from cementscan.synth.spec import ConfounderSpec
from cementscan.synth.torso import Layout, heart_shape
from cementscan.synth.truth import Confounder, TruthObject, side_of
from cementscan.synth.vessels import IVC_RADIUS_MM, Vessels

HU_TITANIUM = 6500.0
HU_STEEL = 9000.0


class ConfounderBuilder:
    """Creates confounder objects (calcific layers first, metal last) and their scene layers."""

    def __init__(
        self, spec: ConfounderSpec, layout: Layout, vessels: Vessels, rng: np.random.Generator
    ):
        self.spec, self.layout, self.vessels, self.rng = spec, layout, vessels, rng
        self.items: list[Confounder] = []
        self.metal: list[tuple[Confounder, float]] = []  # with streak amplitude
        self.augmentation: list[tuple[str, np.ndarray, Shape]] = []  # level, tip, screw shape

    def _add(self, kind: str, shape: Shape, hu: float, note: str | None = None) -> Confounder:
        from cementscan.synth.shapes import sample_inside

        pts, _ = sample_inside(shape, 0.4)
        centroid = tuple(float(c) for c in pts.mean(axis=0)) if len(pts) else (0.0, 0.0, 0.0)
        item = Confounder(len(self.items) + 1, kind, shape, hu, centroid, note=note)  # type: ignore[arg-type]
        self.items.append(item)
        return item

    def build_calcific(self) -> None:
        s, rng, lay, ves = self.spec, self.rng, self.layout, self.vessels
        # Aortic wall plaques: thin crescents in the wall of the descending/abdominal aorta.
        lower = ves.aorta[4:]
        for _ in range(s.aortic_calcifications):
            seg = int(rng.integers(0, len(lower) - 1))
            t = rng.uniform(0, 1)
            c = lower[seg] + t * (lower[seg + 1] - lower[seg])
            r = float(ves.aorta_r[4 + seg])
            axis = lower[seg + 1] - lower[seg]
            n = np.cross(axis, rng.normal(size=3))
            n /= np.linalg.norm(n)
            rot = rotation_from_axis(n)
            self._add("aortic_calcification", Ellipsoid(tuple(c + n * (r - 0.8)), (1.2, 3.5, 4.5), rot),
                      float(rng.uniform(400, 1000)))  # fmt: skip
        # Coronary calcium along the anterior interventricular groove (LAD course).
        heart = heart_shape(lay)
        hx, hy, hz = lay.heart_center
        for k in range(s.coronary_calcifications):
            t = (k + 0.5) / max(1, s.coronary_calcifications)
            p = np.array([hx + 5 + 25 * t, hy - 30, hz + 25 - 50 * t])
            p = _to_surface(heart, p)
            r = float(rng.uniform(1.2, 2.2))
            self._add(
                "coronary_calcification",
                Ellipsoid(tuple(p), (r, r, r * 1.5)),
                float(rng.uniform(400, 900)),
            )
        # Calcified granulomas in the lungs; some touching a pulmonary artery branch.
        for k in range(s.granulomas + s.granulomas_beside_vessels):
            beside = k >= s.granulomas
            r = float(rng.uniform(1.6, 3.2))
            c = self._granuloma_center(r, beside)
            if c is None:
                continue
            self._add("granuloma", Ellipsoid(tuple(c), (r, r, r)), float(rng.uniform(300, 1000)),
                      note="beside a vessel" if beside else None)  # fmt: skip
        for k in range(s.hilar_nodes):
            side = "right" if k % 2 == 0 else "left"
            h = ves.hila[side]
            sx = -1.0 if side == "right" else 1.0
            c = h + np.array([-sx * 14.0, rng.uniform(4, 14), rng.uniform(-22, -12)])
            r = float(rng.uniform(3.5, 5.5))
            self._add("hilar_lymph_node", blob(c, np.array([r, r, r * 1.2]), rng, 3)(1.0),
                      float(rng.uniform(300, 900)))  # fmt: skip
        s1 = lay.vertebrae["S1"]
        for k in range(s.phleboliths):
            sx = -1.0 if k % 2 == 0 else 1.0
            c = np.array(
                [
                    sx * rng.uniform(45, 70),
                    s1.y_mm + rng.uniform(-10, 25),
                    rng.uniform(lay.pelvis_z + 15, -55),
                ]
            )
            r = float(rng.uniform(1.8, 2.8))
            ring = Subtract(Ellipsoid(tuple(c), (r, r, r)), (Ellipsoid(tuple(c), (r * 0.4,) * 3),))
            self._add("phlebolith", ring, float(rng.uniform(400, 900)))
        for level in s.osteophyte_levels:
            v = lay.vertebrae[level]
            for sx in (-1.0, 1.0):
                for z, dz in ((v.z_lo, -1.0), (v.z_hi, 1.0)):
                    c = (sx * v.ax_mm * 0.85, v.front_y_mm + 4.0, z + dz * 2.0)
                    self._add("osteophyte", Ellipsoid(c, (4.0, 4.0, 4.5)), 800.0, note=level)
        names = lay.level_names()
        for level in s.disc_calcifications:
            v = lay.vertebrae[level]
            below = lay.vertebrae[names[names.index(level) + 1]]
            zc = 0.5 * (v.z_lo + below.z_hi)
            half_mm = float(0.5 * (v.z_lo - below.z_hi))
            self._add("disc_calcification", Ellipsoid((0.0, v.y_mm + 2.0, zc), (7.0, 5.0, max(half_mm - 1.0, 1.5))),
                      float(rng.uniform(300, 700)), note=f"{level}-{below.level}")  # fmt: skip

    def dense_venous_contrast(self) -> Confounder | None:
        if not self.spec.dense_venous_contrast:
            return None
        svc = Tube(self.vessels.svc[:2], np.array([8.0, 8.0]))
        return self._add(
            "dense_venous_contrast", svc, float(self.rng.uniform(1500, 2500)), note="svc"
        )

    def build_metal(self) -> None:
        s, rng, lay, ves = self.spec, self.rng, self.layout, self.vessels
        for screw in s.pedicle_screws:
            v = lay.vertebrae[screw.level]
            for side in screw.sides:
                sx = -1.0 if side == "right" else 1.0
                entry = np.array([sx * (v.canal_rx_mm + 6.0), v.canal_y_mm + 8.0, v.z_mm])
                tip = np.array([sx * v.ax_mm * 0.2, v.y_mm - v.ay_mm * 0.55, v.z_mm])
                head = Ellipsoid(
                    tuple(entry + (entry - tip) / np.linalg.norm(entry - tip) * 5.0),
                    (6.0, 6.0, 6.0),
                )
                shape = Union((Tube(np.array([entry, tip]), np.array([3.2, 2.6])), head))
                item = self._add("pedicle_screw", shape, HU_TITANIUM,
                                 note=f"{screw.level} {side}" + (" cement-augmented" if screw.augmented else ""))  # fmt: skip
                self.metal.append((item, 420.0))
                if screw.augmented:
                    self.augmentation.append((screw.level, tip, shape))
        dr = lay.dome_z["right"]
        for _ in range(s.surgical_clips):
            c = np.array(
                [rng.uniform(-70, -30), rng.uniform(-60, -30), rng.uniform(dr - 110, dr - 70)]
            )
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            item = self._add(
                "surgical_clip",
                Tube(np.array([c - 3.5 * d, c + 3.5 * d]), np.array([0.9, 0.9])),
                HU_STEEL,
            )
            self.metal.append((item, 150.0))
        if s.ivc_filter_level is not None:
            v = lay.vertebrae[s.ivc_filter_level]
            apex = ves.ivc_point_at(v.z_hi + 10.0)
            legs = []
            for k in range(6):
                a = 2 * np.pi * k / 6
                foot = ves.ivc_point_at(v.z_hi - 30.0) + (IVC_RADIUS_MM - 1.0) * np.array(
                    [np.cos(a), np.sin(a), 0.0]
                )
                legs.append(Tube(np.array([apex, foot]), np.array([0.5, 0.5])))
            item = self._add("ivc_filter", Union(tuple(legs)), HU_STEEL)
            self.metal.append((item, 120.0))

    def screw_augmentation_cement(self, start_id: int, hu: float) -> list[TruthObject]:
        """Cement around augmented screw tips: real intravertebral cement (truth, not confounder)."""
        out = []
        for n, (level, tip, screw) in enumerate(self.augmentation):
            v = self.layout.vertebrae[level]
            make = blob(tip, np.array([6.0, 6.0, 6.0]), self.rng, 4)
            body = v.body(2.0)

            def clipped(
                s: float, make: Callable[[float], Shape] = make, body: Shape = body
            ) -> Shape:
                return Intersect((make(s), body))

            shape = fit_volume(clipped, 1.2)
            obj = TruthObject(id=start_id + n, category="intravertebral", shape_kind="amorphous",
                              shape=Subtract(shape, (screw,)), hu=hu, side="", level=level,
                              note="screw_augmentation")  # fmt: skip
            obj.measure()
            obj.side = side_of(obj.centroid_lps_mm[0])
            out.append(obj)
        return out

    def _granuloma_center(self, r: float, beside: bool) -> np.ndarray | None:
        rng, lay = self.rng, self.layout
        if beside:
            cands = [s for s in self.vessels.pa_tree if 1.0 <= s.radius_mm <= 3.0]
            for _ in range(50):
                seg = cands[int(rng.integers(0, len(cands)))]
                d = seg.p1 - seg.p0
                perp = np.cross(d, rng.normal(size=3))
                perp /= np.linalg.norm(perp)
                c = seg.p0 + 0.5 * d + perp * (seg.radius_mm + r + 0.3)
                if _depth(lay.lung_shapes[seg.side], c) > r + 3.0:
                    return c
            return None
        for _ in range(200):
            side = "right" if rng.uniform() < 0.5 else "left"
            lo, hi = lay.lung_shapes[side].bbox()
            c = rng.uniform(lo, hi)
            if _depth(lay.lung_shapes[side], c) > r + 5.0 and self._clear_of_vessels(c, r + 2.5):
                return c
        return None

    def _clear_of_vessels(self, c: np.ndarray, margin: float) -> bool:
        for seg in self.vessels.pa_tree:
            d = seg.p1 - seg.p0
            t = np.clip(np.dot(c - seg.p0, d) / max(np.dot(d, d), 1e-9), 0, 1)
            if np.linalg.norm(c - (seg.p0 + t * d)) < seg.radius_mm + margin:
                return False
        return True


def _depth(shape: Shape, p: np.ndarray) -> float:
    return float(
        -np.asarray(shape.sdf(np.array([p[0]]), np.array([p[1]]), np.array([p[2]]))).ravel()[0]
    )


def _to_surface(shape: Ellipsoid, p: np.ndarray) -> np.ndarray:
    """Project ``p`` radially from the ellipsoid's centre onto its surface."""
    c = np.asarray(shape.center, dtype=float)
    k = float(
        np.asarray(shape.sdf(np.array([p[0]]), np.array([p[1]]), np.array([p[2]]))).ravel()[0]
    )
    k = k / min(shape.radii_mm) + 1.0
    return c + (p - c) / max(k, 1e-6)
