"""Vessels: aorta, IVC, SVC, azygos, segmental veins and the branching pulmonary artery tree.

Positions follow the torso layout (LPS, patient's right at negative x): the IVC runs
right-anterior of the lumbar bodies and enters the right atrium, the aorta left-anterior,
the azygos right-posterior beside the thoracic bodies, arching into the SVC at T4.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cementscan.synth.render import Scene
from cementscan.synth.shapes import Tube
from cementscan.synth.torso import Layout, right_atrium_center, right_ventricle_center

IVC_RADIUS_MM = 10.5
AZYGOS_RADIUS_MM = 4.0
SEGMENTAL_VEIN_RADIUS_MM = 2.0


@dataclass
class PASegment:
    """One pulmonary artery segment of the tree (p0 -> p1), with its lung, lobe and depth."""

    p0: np.ndarray
    p1: np.ndarray
    radius_mm: float
    side: str
    lobe: str
    generation: int  # 0 main/lobar trunk from the hilum, higher = more peripheral

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.p1 - self.p0))

    @property
    def central(self) -> bool:
        """Lobar or more proximal (Krueger's 'central', DESIGN.md §4)."""
        return self.generation <= 0


@dataclass
class Vessels:
    """Centrelines (LPS mm) and radii of the named vessels, for placing cement and look-alikes."""

    aorta: np.ndarray
    aorta_r: np.ndarray
    ivc: np.ndarray
    svc: np.ndarray
    azygos: np.ndarray
    pa_central: list[PASegment] = field(default_factory=list)
    pa_tree: list[PASegment] = field(default_factory=list)
    hila: dict[str, np.ndarray] = field(default_factory=dict)

    def ivc_point_at(self, z_mm: float) -> np.ndarray:
        """IVC centre at height ``z_mm`` (on its infrarenal/lumbar, near-vertical course)."""
        pts = self.ivc[np.argsort(self.ivc[:, 2])]
        return np.array([np.interp(z_mm, pts[:, 2], pts[:, a]) for a in range(3)])

    def azygos_point_at(self, z_mm: float) -> np.ndarray:
        vertical = self.azygos[:-2]
        pts = vertical[np.argsort(vertical[:, 2])]
        return np.array([np.interp(z_mm, pts[:, 2], pts[:, a]) for a in range(3)])


def build_vessels(layout: Layout, rng: np.random.Generator) -> Vessels:
    v = layout.vertebrae
    s1 = v["S1"]
    # IVC: from the iliac confluence at L5 up the right-anterior side of the lumbar bodies,
    # then forward through the liver into the right atrium.
    ivc_pts = [(-20.0, v["L5"].front_y_mm - 6.0, v["L5"].z_lo + 2.0)]
    for name in ("L5", "L4", "L3", "L2", "L1"):
        b = v[name]
        ivc_pts.append((-(b.ax_mm * 0.75 + 8.0), b.front_y_mm - 9.0, b.z_mm))
    t12, t11 = v["T12"], v["T11"]
    ra = right_atrium_center(layout)
    ivc_pts += [
        (-28.0, t12.front_y_mm - 16.0, t12.z_mm),
        (-26.0, t11.front_y_mm - 30.0, t11.z_mm + 4.0),
        (ra[0] + 4.0, ra[1] + 8.0, layout.dome_z["right"] + 8.0),
        (ra[0], ra[1], ra[2] - 8.0),
    ]
    aorta_pts, aorta_r = _aorta(layout)
    t4 = v["T4"]
    svc_bottom = ra + np.array([2.0, 0.0, 22.0])
    svc = np.array(
        [(-26.0, -30.0, layout.apex_z + 45.0), (-26.0, -28.0, t4.z_mm), tuple(svc_bottom)]
    )
    az = []
    for name in ("L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6", "T5", "T4"):
        b = v[name]
        az.append((-(b.ax_mm * 0.55 + 3.0), b.front_y_mm + 3.0, b.z_mm))
    az.append((-24.0, t4.front_y_mm - 14.0, t4.z_hi + 8.0))  # the arch over the right hilum
    az.append((svc[1][0] + 2.0, svc[1][1] + 6.0, t4.z_mm + 2.0))
    vessels = Vessels(np.array(aorta_pts), np.array(aorta_r), np.array(ivc_pts), svc, np.array(az))
    _pulmonary_arteries(vessels, layout, rng)
    del s1
    return vessels


def _aorta(layout: Layout) -> tuple[list[tuple[float, float, float]], list[float]]:
    v = layout.vertebrae
    hx, hy, hz = layout.heart_center
    t3, t4, t5 = v["T3"], v["T4"], v["T5"]
    pts: list[tuple[float, float, float]] = [
        (hx - 15.0, hy + 2.0, hz + 22.0),  # root at the left ventricular outflow
        (hx - 14.0, hy - 6.0, hz + 55.0),  # ascending
        (0.0, -22.0, t4.z_mm),
        (8.0, t3.front_y_mm - 18.0, t3.z_mm + 4.0),  # arch top
        (20.0, t4.front_y_mm - 4.0, t4.z_mm),
        (22.0, t5.front_y_mm + 2.0, t5.z_mm),
    ]
    radii = [14.0, 14.5, 13.5, 13.0, 12.5, 12.0]
    for name in ("T7", "T9", "T11", "T12", "L1", "L2", "L3"):
        b = v[name]
        x = b.ax_mm * 0.55 + 8.0 if name.startswith("T") else b.ax_mm * 0.35 + 6.0
        y = b.front_y_mm + (4.0 if name.startswith("T") else -10.0)
        pts.append((x, y, b.z_mm))
        radii.append(11.5 if name.startswith("T") else 9.5)
    l4 = v["L4"]
    pts.append((8.0, l4.front_y_mm - 10.0, l4.z_mm))  # bifurcation
    radii.append(9.0)
    return pts, radii


def add_great_vessels(scene: Scene, layout: Layout, vessels: Vessels, *, hu_artery: float,
                      hu_vein: float, hu_pulmonary: float) -> None:  # fmt: skip
    """Paint the aorta, IVC, SVC, azygos, iliac and segmental veins, PA trunk and tree."""
    v = layout.vertebrae
    scene.tubes(vessels.aorta, vessels.aorta_r, hu_artery, "aorta")
    l4, s1 = v["L4"], v["S1"]
    bif = vessels.aorta[-1]
    for sx in (-1.0, 1.0):
        iliac = np.array([bif, (sx * 45.0, s1.front_y_mm - 8.0, s1.z_lo - 15.0)])
        scene.tubes(iliac, 6.0, hu_artery, "iliac_artery")
    conf = vessels.ivc[0]
    for sx in (-1.0, 1.0):
        iliac = np.array([(sx * 50.0, s1.front_y_mm + 2.0, s1.z_lo - 20.0), conf])
        scene.tubes(iliac, 7.5, hu_vein, "iliac_vein")
    scene.tubes(vessels.ivc, IVC_RADIUS_MM, hu_vein, "ivc")
    # Renal veins into the IVC at L1-L2 (the left one crosses in front of the aorta).
    l1 = v["L1"]
    for sx in (-1.0, 1.0):
        z = l1.z_lo - 4.0
        p_ivc = vessels.ivc_point_at(z)
        scene.tubes(np.array([(sx * 60.0, l1.y_mm + 8.0, z), (0.0 if sx > 0 else -40.0, l1.front_y_mm - 22.0, z), p_ivc]),
                    4.5, hu_vein, "renal_vein")  # fmt: skip
    # Lumbar segmental veins from each body's side toward the IVC (right) / behind the aorta (left).
    for name in ("L1", "L2", "L3", "L4", "L5"):
        for sx in (-1.0, 1.0):
            pts = segmental_vein_path(layout, vessels, name, "right" if sx < 0 else "left")
            scene.tubes(pts, SEGMENTAL_VEIN_RADIUS_MM, hu_vein, "segmental_vein")
    scene.tubes(vessels.svc, 9.0, hu_vein, "svc")
    t2 = v["T2"]
    brachio = np.array(
        [(70.0, -20.0, t2.z_hi + 10.0), (10.0, -35.0, t2.z_mm), vessels.svc[1] + [0, 0, 20.0]]
    )
    scene.tubes(brachio, 6.5, hu_vein, "brachiocephalic_vein_left")
    scene.tubes(vessels.azygos, AZYGOS_RADIUS_MM, hu_vein, "azygos")
    for seg in vessels.pa_central:
        scene.add(Tube(np.array([seg.p0, seg.p1]), np.array([seg.radius_mm, seg.radius_mm])),
                  hu_pulmonary, "pulmonary_arteries")  # fmt: skip
    for seg in vessels.pa_tree:
        scene.add(Tube(np.array([seg.p0, seg.p1]), np.array([seg.radius_mm, seg.radius_mm * 0.92])),
                  hu_pulmonary, "pulmonary_arteries")  # fmt: skip
    del l4


def segmental_vein_path(layout: Layout, vessels: Vessels, level: str, side: str) -> np.ndarray:
    """A segmental vein from the body's lateral surface toward the IVC (lumbar) or azygos."""
    b = layout.vertebrae[level]
    sx = -1.0 if side == "right" else 1.0
    start = np.array([sx * b.ax_mm * 0.92, b.y_mm - b.ay_mm * 0.35, b.z_mm])
    out = np.array([sx * (b.ax_mm + 4.0), b.front_y_mm + 2.0, b.z_mm + 4.0])
    if level.startswith("L"):
        target = vessels.ivc_point_at(b.z_mm + 14.0)
        if sx > 0:
            # Left lumbar veins pass in front of the bodies behind the aorta to the IVC.
            mid = np.array([0.0, b.front_y_mm - 3.0, b.z_mm + 8.0])
            return np.array([start, out, mid, target])
        return np.array([start, out, target])
    target = vessels.azygos_point_at(b.z_mm + 10.0)
    if sx > 0:
        mid = np.array([0.0, b.front_y_mm - 2.0, b.z_mm + 6.0])
        return np.array([start, out, mid, target])
    return np.array([start, out, target])


def _pulmonary_arteries(vessels: Vessels, layout: Layout, rng: np.random.Generator) -> None:
    v = layout.vertebrae
    rv = right_ventricle_center(layout)
    t5, t6 = v["T5"], v["T6"]
    outflow = rv + np.array([14.0, -4.0, 26.0])
    bif = np.array([6.0, t5.front_y_mm - 40.0, t5.z_mm])
    hila = {
        "right": np.array([-58.0, t6.front_y_mm - 22.0, t6.z_mm]),
        "left": np.array([52.0, t5.front_y_mm - 14.0, t5.z_mm + 6.0]),
    }
    vessels.hila = hila
    central = [PASegment(outflow, bif, 13.0, "midline", "trunk", -2)]
    r_mid = np.array([-30.0, t5.front_y_mm - 30.0, t6.z_hi])
    central.append(PASegment(bif, r_mid, 10.5, "right", "main", -1))
    central.append(PASegment(r_mid, hila["right"], 10.0, "right", "main", -1))
    l_mid = np.array([34.0, t5.front_y_mm - 28.0, t5.z_hi + 4.0])
    central.append(PASegment(bif, l_mid, 10.5, "left", "main", -1))
    central.append(PASegment(l_mid, hila["left"], 10.0, "left", "main", -1))
    vessels.pa_central = central
    lobes = {
        "right": [("upper", (-0.45, -0.1, 0.9), 6.5), ("middle", (-0.45, -0.85, -0.25), 5.0),
                  ("lower", (-0.45, 0.35, -0.82), 7.0)],
        "left": [("upper", (0.45, -0.2, 0.87), 6.5), ("lingula", (0.4, -0.85, -0.3), 4.5),
                 ("lower", (0.45, 0.35, -0.82), 7.0)],
    }  # fmt: skip
    tree: list[PASegment] = []
    for side, branches in lobes.items():
        lung = layout.lung_shapes[side]
        for lobe, direction, r0 in branches:
            d = np.asarray(direction, dtype=float)
            _grow(tree, lung, hila[side], d / np.linalg.norm(d), r0, side, lobe, 0, rng)
    vessels.pa_tree = tree


def _inside_depth(lung: object, p: np.ndarray) -> float:
    d = lung.sdf(np.array([p[0]]), np.array([p[1]]), np.array([p[2]]))  # type: ignore[attr-defined]
    return float(-np.asarray(d).ravel()[0])


def _grow(tree: list[PASegment], lung: object, start: np.ndarray, direction: np.ndarray,
          radius: float, side: str, lobe: str, gen: int, rng: np.random.Generator) -> None:  # fmt: skip
    """Recursive branching: each branch forks in two smaller, diverging children."""
    if radius < 0.5 or gen > 9:
        return
    length = float(np.clip(radius * 7.0 + rng.uniform(2.0, 8.0), 8.0, 45.0))
    best: tuple[float, np.ndarray] | None = None
    for attempt in range(6):
        d = direction + (rng.normal(0, 0.18 + 0.08 * attempt, 3) if attempt else 0.0)
        d = d / np.linalg.norm(d)
        end = start + d * length
        depth = _inside_depth(lung, end)
        if gen == 0 or depth > radius + 1.5:
            best = (depth, d)
            break
        if best is None or depth > best[0]:
            best = (depth, d)
    assert best is not None
    depth, d = best
    end = start + d * length
    if gen > 0 and depth < radius + 0.5:
        # Near the pleura: a short terminal stub that stays inside the lung.
        end = start + d * max(length * 0.4, 3.0)
        if _inside_depth(lung, end) < radius:
            return
        tree.append(PASegment(start, end, radius, side, lobe, gen))
        return
    tree.append(PASegment(start, end, radius, side, lobe, gen))
    # Two children diverging from the parent's axis in a random plane.
    perp = np.cross(d, rng.normal(size=3))
    perp /= np.linalg.norm(perp)
    for k, (ratio, angle) in enumerate(((rng.uniform(0.72, 0.8), rng.uniform(0.25, 0.45)),
                                        (rng.uniform(0.58, 0.68), rng.uniform(0.5, 0.8)))):  # fmt: skip
        sign = 1.0 if k == 0 else -1.0
        child = np.cos(angle) * d + sign * np.sin(angle) * perp
        _grow(
            tree, lung, end, child / np.linalg.norm(child), radius * ratio, side, lobe, gen + 1, rng
        )
