"""The torso: spine layout (levels in LPS mm), body wall, lungs, abdominal organs and bones.

Frame: LPS millimetres, x = 0 on the spinal canal's midline (no scoliosis), z = 0 at the
S1 upper endplate. The patient's right is at negative x. HU values are for 120 kVp native CT:
fat -100, muscle +50, lung about -850, trabecular bone 150-300, cortical 700-1500
(clinical-evidence.md §4 "Reference values for confounders": cortical +500..+1900,
cancellous +300..+400, lower in osteoporosis).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from cementscan.synth.render import Scene
from cementscan.synth.shapes import (
    Ellipsoid,
    EllipticSlab,
    HalfSpace,
    Intersect,
    ProfiledCylinder,
    Shape,
    Subtract,
    Tube,
    Union,
    rotation_from_axis,
)
from cementscan.synth.spec import LEVELS, LUMBAR, THORACIC

HU_FAT = -100.0
HU_SKIN = 30.0
HU_MUSCLE = 50.0
HU_VISCERA = 35.0
HU_LUNG = -850.0
HU_AIR = -1000.0
HU_CORTICAL = 1000.0  # within 700-1500
HU_TRABECULAR = 220.0  # within 150-300
HU_POSTERIOR = 550.0  # posterior elements: thin cortex and marrow mixed at CT resolution
HU_DISC = 80.0
HU_CSF = 10.0
HU_CORD = 35.0
HU_EPIDURAL_FAT = -80.0
HU_CARTILAGE = 120.0
# Lamina rows, as fractions of the body's height above (+) or below (-) its mid-height.
LAMINA_DZ_FRACTIONS = (0.2, 0.0, -0.2, -0.4)


@dataclass(frozen=True)
class Vertebra:
    """One vertebral body: endplates ``z_lo``..``z_hi``, centre (0, y, z) and semi-axes."""

    level: str
    z_lo: float
    z_hi: float
    y_mm: float
    ax_mm: float
    ay_mm: float
    canal_y_mm: float
    canal_rx_mm: float
    canal_ry_mm: float

    @property
    def z_mm(self) -> float:
        return 0.5 * (self.z_lo + self.z_hi)

    @property
    def center(self) -> tuple[float, float, float]:
        return (0.0, self.y_mm, self.z_mm)

    @property
    def front_y_mm(self) -> float:
        return self.y_mm - self.ay_mm

    def body(self, inset_mm: float = 0.0) -> EllipticSlab:
        return EllipticSlab(
            (0.0, self.y_mm),
            (self.ax_mm - inset_mm, self.ay_mm - inset_mm),
            self.z_lo + inset_mm,
            self.z_hi - inset_mm,
        )


@dataclass
class Layout:
    """Where every level sits, the body outline, the lungs' extent and other landmarks."""

    vertebrae: dict[str, Vertebra]
    body: ProfiledCylinder
    rib_levels: tuple[str, ...]
    transitional: bool
    dome_z: dict[str, float]  # diaphragm dome top per side
    apex_z: float
    pelvis_z: float
    heart_center: tuple[float, float, float]
    lung_shapes: dict[str, Shape] = field(default_factory=dict)
    lung_z: dict[str, tuple[float, float]] = field(default_factory=dict)

    def level_names(self) -> list[str]:
        return list(self.vertebrae)

    def nearest_level(self, z_mm: float) -> str:
        """The level whose body (endplate to endplate) is nearest to ``z_mm``."""
        best, best_d = "", float("inf")
        for name, v in self.vertebrae.items():
            d = max(v.z_lo - z_mm, z_mm - v.z_hi, 0.0) + 1e-3 * abs(z_mm - v.z_mm)
            if d < best_d:
                best, best_d = name, d
        return best

    def canal_y(self, z_mm: float) -> float:
        zs = [v.z_mm for v in self.vertebrae.values()][::-1]
        ys = [v.canal_y_mm for v in self.vertebrae.values()][::-1]
        return float(np.interp(z_mm, zs, ys))

    def landmark_z(self, name: str, cranial: bool) -> float:
        """z of a FOV landmark: a level's body (with a 10 mm margin), 'apex' or 'pelvis'."""
        if name == "apex":
            return self.apex_z + 15.0
        if name == "pelvis":
            return self.pelvis_z
        v = self.vertebrae[name]
        return v.z_hi + 10.0 if cranial else v.z_lo - 10.0

    def lung_zone(self, side: str, z_mm: float) -> str:
        """Thirds of that lung's craniocaudal extent (the zone convention of truth.json)."""
        lo, hi = self.lung_z[side]
        t = (z_mm - lo) / (hi - lo)
        return "lower" if t < 1 / 3 else ("middle" if t < 2 / 3 else "upper")


def build_layout(*, transitional: bool = False, rib_pairs: int = 12) -> Layout:
    """Stack the vertebrae from S1 upward with lordosis and kyphosis; derive the landmarks."""
    # Body heights, disc heights (mm) and semi-axes grow caudally, as in adults.
    specs: list[tuple[str, float, float, float, float]] = []  # level, height, disc below, ax, ay
    for n, name in enumerate(THORACIC, start=1):
        disc_below = 4.5 + 0.25 * n if n < 12 else 7.0
        specs.append((name, 16.0 + 0.7 * (n - 1), disc_below, 14.0 + 0.8 * n, 11.0 + 0.6 * n))
    for n, name in enumerate(LUMBAR, start=1):
        disc_below = (9.0, 10.0, 10.0, 11.0, 11.0)[n - 1]
        if name == "L5" and transitional:
            disc_below = 4.0  # a rudimentary disc under a sacralised L5
        specs.append((name, 24.5 + 0.6 * n, disc_below, 23.5 + 0.7 * n, 17.5 + 0.5 * n))
    # Body-centre y by level: lumbar lordosis (forward), thoracic kyphosis (backward).
    y_by_level = {"S1": 32.0, "L5": 26.0, "L4": 20.0, "L3": 17.0, "L2": 19.0, "L1": 25.0,
                  "T12": 31.0, "T10": 40.0, "T8": 45.0, "T6": 45.0, "T4": 41.0, "T2": 33.0,
                  "T1": 29.0}  # fmt: skip
    order = list(LEVELS)
    known = [(order.index(k), v) for k, v in y_by_level.items()]
    known.sort()
    idx = np.array([k for k, _ in known], dtype=float)
    ys = np.array([v for _, v in known])

    vertebrae: dict[str, Vertebra] = {}
    s1_h = 27.0
    z_top = 0.0  # S1 upper endplate
    s1 = Vertebra("S1", -s1_h, 0.0, float(np.interp(order.index("S1"), idx, ys)), 26.0, 18.0,
                  0.0, 0.0, 0.0)  # fmt: skip
    for name, height, disc_below, ax, ay in reversed(specs):
        z_lo = z_top + disc_below
        z_hi = z_lo + height
        y = float(np.interp(order.index(name), idx, ys))
        lumbar = name.startswith("L")
        crx, cry = (11.0, 8.5) if lumbar else (8.0, 7.5)
        canal_y = y + ay + cry + 1.5
        vertebrae[name] = Vertebra(name, z_lo, z_hi, y, ax, ay, canal_y, crx, cry)
        z_top = z_hi
    s1 = Vertebra("S1", s1.z_lo, s1.z_hi, s1.y_mm, s1.ax_mm, s1.ay_mm, s1.y_mm + 18.0 + 7.0,
                  9.0, 5.0)  # fmt: skip
    ordered = {name: vertebrae[name] for name in order if name in vertebrae}
    ordered["S1"] = s1

    t1, t10, t12 = ordered["T1"], ordered["T10"], ordered["T12"]
    apex_z = t1.z_hi + 22.0
    pelvis_z = s1.z_lo - 95.0
    dome = {"right": t10.z_mm + 4.0, "left": t10.z_mm - 12.0}
    # Body outline knots: chest broad, waist narrower, hips broad again (semi-axes in mm).
    zk = (pelvis_z - 20, s1.z_lo, ordered["L3"].z_mm, ordered["L1"].z_mm, t10.z_mm,
          ordered["T6"].z_mm, ordered["T2"].z_mm, apex_z + 40)  # fmt: skip
    body = ProfiledCylinder(
        z_knots=zk,
        cx=(0, 0, 0, 0, 0, 0, 0, 0),
        cy=(12, 10, 2, 4, 10, 12, 10, 8),
        ax=(172, 168, 150, 152, 160, 165, 158, 140),
        ay=(108, 112, 105, 110, 118, 118, 105, 92),
        z_lo=pelvis_z - 20,
        z_hi=apex_z + 40,
    )
    heart_center = (18.0, -28.0, t10.z_hi + 48.0)
    rib_levels = THORACIC[:rib_pairs] if rib_pairs <= 12 else (*THORACIC, "L1")
    layout = Layout(ordered, body, tuple(rib_levels), transitional, dome, apex_z, pelvis_z,
                    heart_center)  # fmt: skip
    _define_lungs(layout)
    del t12
    return layout


def _dome(layout: Layout, side: str) -> Ellipsoid:
    """The abdomen below one hemidiaphragm: the lung is what lies above this dome."""
    sx = -1.0 if side == "right" else 1.0
    top = layout.dome_z[side]
    return Ellipsoid((sx * 70.0, 5.0, top - 95.0), (105.0, 150.0, 95.0))


def _below_domes(layout: Layout) -> Shape:
    return Union((_dome(layout, "right"), _dome(layout, "left"),
                  HalfSpace((0.0, 0.0, 1.0), min(layout.dome_z.values()) - 60.0,
                            (np.full(3, -1e4), np.full(3, 1e4)))))  # fmt: skip


def heart_shape(layout: Layout, grow_mm: float = 0.0) -> Ellipsoid:
    # Long axis from the base (right, posterior, superior) to the apex (left, anterior, inferior).
    rot = rotation_from_axis((0.62, -0.45, -0.64))
    return Ellipsoid(layout.heart_center, (62.0 + grow_mm, 44.0 + grow_mm, 46.0 + grow_mm), rot)


def _define_lungs(layout: Layout) -> None:
    cavity = layout.body.shrunk(30.0)
    t1 = layout.vertebrae["T1"]
    bottom = min(layout.dome_z.values()) - 110.0
    spine_keepout = ProfiledCylinder(
        z_knots=tuple(v.z_mm for v in reversed(layout.vertebrae.values())),
        cx=tuple(0.0 for _ in layout.vertebrae),
        cy=tuple(v.y_mm + 8.0 for v in reversed(layout.vertebrae.values())),
        ax=tuple(v.ax_mm + 7.0 for v in reversed(layout.vertebrae.values())),
        ay=tuple(v.ay_mm + 22.0 for v in reversed(layout.vertebrae.values())),
        z_lo=bottom,
        z_hi=layout.apex_z + 30.0,
    )
    mediastinum = Ellipsoid((2.0, -20.0, layout.heart_center[2] + 40.0), (30.0, 70.0, 170.0))
    for side in ("right", "left"):
        sx = -1.0 if side == "right" else 1.0
        envelope = Ellipsoid((sx * 78.0, 8.0, layout.apex_z - 210.0), (88.0, 120.0, 210.0))
        medial = HalfSpace((-sx, 0.0, 0.0), -14.0, (np.full(3, -1e4), np.full(3, 1e4)))
        lung = Subtract(
            Intersect((envelope, cavity, medial)),
            (_dome(layout, side), heart_shape(layout, 6.0), spine_keepout, mediastinum),
        )
        layout.lung_shapes[side] = lung
        layout.lung_z[side] = (_lowest_lung_z(lung, layout), layout.apex_z)
    del t1


def _lowest_lung_z(lung: Shape, layout: Layout) -> float:
    from cementscan.synth.shapes import sample_inside

    pts, _ = sample_inside(lung, step_mm=4.0)
    return float(pts[:, 2].min()) if len(pts) else min(layout.dome_z.values()) - 40.0


def add_body(scene: Scene, layout: Layout) -> None:
    """Skin, subcutaneous fat, muscle wall, the abdominal viscera and mediastinal fat."""
    body = layout.body
    scene.add(body, HU_SKIN, "body")
    scene.add(body.shrunk(2.5), HU_FAT, "subcutaneous_fat")
    scene.add(body.shrunk(18.0), HU_MUSCLE, "muscle")
    cavity = body.shrunk(30.0)
    scene.add(cavity, HU_VISCERA, "abdominal_viscera")
    # Mediastinal fat above the domes (the lungs and heart are painted over it).
    chest = Intersect((cavity, HalfSpace((0, 0, -1.0), -(min(layout.dome_z.values()) - 20.0),
                                          (np.full(3, -1e4), np.full(3, 1e4)))))  # fmt: skip
    scene.add(Subtract(chest, (_dome(layout, "right"), _dome(layout, "left"))), -80.0,
              "mediastinum")  # fmt: skip
    # Paraspinal muscles behind the spine and the psoas beside the lumbar bodies.
    verts = list(layout.vertebrae.values())
    for sx, side in ((-1.0, "right"), (1.0, "left")):
        pts = np.array([(sx * (v.canal_rx_mm + 22.0), v.canal_y_mm + 22.0, v.z_mm) for v in verts])
        scene.tubes(pts, 20.0, HU_MUSCLE, f"paraspinal_muscle_{side}")


def add_abdomen(scene: Scene, layout: Layout, rng: np.random.Generator) -> None:
    """Liver, spleen, kidneys and a few bowel gas pockets (realism for the anatomy stage)."""
    cavity = layout.body.shrunk(30.0)
    dr, dl = layout.dome_z["right"], layout.dome_z["left"]
    liver = Intersect((Ellipsoid((-55.0, -10.0, dr - 75.0), (95.0, 95.0, 78.0)), _dome(layout, "right"),
                       cavity))  # fmt: skip
    scene.add(liver, 55.0, "liver")
    spleen = Intersect((Ellipsoid((78.0, 45.0, dl - 55.0), (32.0, 50.0, 48.0)), _dome(layout, "left"),
                        cavity))  # fmt: skip
    scene.add(spleen, 45.0, "spleen")
    # Retroperitoneal fat around the great vessels, psoas and kidneys (they stand out in it).
    verts = [layout.vertebrae[n] for n in ("T12", "L1", "L2", "L3", "L4", "L5", "S1")]
    for v in verts:
        retro = EllipticSlab(
            (0.0, v.y_mm + 5.0), (105.0, v.ay_mm + 38.0), v.z_lo - 12.0, v.z_hi + 12.0
        )
        scene.add(Intersect((retro, cavity, _below_domes(layout))), -90.0, "retroperitoneal_fat")
    for sx, side in ((-1.0, "right"), (1.0, "left")):
        psoas = [layout.vertebrae[n] for n in ("T12", "L1", "L2", "L3", "L4", "L5")]
        pts = np.array([(sx * (v.ax_mm + 4.0 + 3.0 * i), v.y_mm + 4.0, v.z_mm)
                        for i, v in enumerate(psoas)])  # fmt: skip
        scene.tubes(pts, np.linspace(6.0, 19.0, len(pts)), HU_MUSCLE, f"psoas_{side}")
    l2 = layout.vertebrae["L2"]
    for sx, side in ((-1.0, "right"), (1.0, "left")):
        dz = -12.0 if side == "right" else 0.0  # the right kidney sits lower (liver above it)
        rot = rotation_from_axis((sx * 0.18, -0.25, 1.0))
        center = (sx * 72.0, l2.y_mm + 12.0, l2.z_mm + dz)
        scene.add(Ellipsoid(center, (62.0, 33.0, 37.0), rot), -95.0, "perirenal_fat")
        scene.add(Ellipsoid(center, (55.0, 26.0, 30.0), rot), 30.0, f"kidney_{side}")
    l3, l5 = layout.vertebrae["L3"], layout.vertebrae["L5"]
    for _ in range(6):
        c = (rng.uniform(-70, 70), rng.uniform(-85, -45), rng.uniform(l5.z_mm, l3.z_hi + 20))
        r = rng.uniform(6.0, 14.0)
        scene.add(Intersect((Ellipsoid(c, (r, r * 0.8, r * 0.7)), cavity)), HU_AIR, "bowel_gas")


def add_lungs(scene: Scene, layout: Layout) -> None:
    for side in ("right", "left"):
        scene.add(layout.lung_shapes[side], HU_LUNG, f"lung_{side}")
    # Trachea and main bronchi: air tubes ending at the hila.
    t2, t5 = layout.vertebrae["T2"], layout.vertebrae["T5"]
    carina = np.array([0.0, t5.front_y_mm - 22.0, t5.z_hi + 5.0])
    top = np.array([0.0, t2.front_y_mm - 30.0, layout.apex_z + 40.0])
    scene.tubes(np.array([top, carina]), 9.0, HU_AIR, "trachea")
    for sx in (-1.0, 1.0):
        hilum = carina + np.array([sx * 50.0, 8.0, -18.0 if sx < 0 else -30.0])
        scene.tubes(np.array([carina, hilum]), 6.0, HU_AIR, "trachea")


def add_heart(scene: Scene, layout: Layout, hu_left: float, hu_right: float) -> None:
    """Heart in its pericardial fat; right atrium and ventricle as labelled parts of it."""
    scene.add(heart_shape(layout, 4.0), HU_FAT, "pericardial_fat")
    heart = heart_shape(layout)
    scene.add(heart, hu_left, "heart")
    hx, hy, hz = layout.heart_center
    ra = Intersect((Ellipsoid((hx - 42.0, hy + 8.0, hz + 4.0), (24.0, 24.0, 30.0)), heart))
    rv = Intersect((Ellipsoid((hx - 8.0, hy - 28.0, hz - 6.0), (34.0, 16.0, 30.0)), heart))
    scene.add(ra, hu_right, "right_atrium")
    scene.add(rv, hu_right, "right_ventricle")


def right_atrium_center(layout: Layout) -> np.ndarray:
    hx, hy, hz = layout.heart_center
    return np.array([hx - 42.0, hy + 8.0, hz + 4.0])


def right_ventricle_center(layout: Layout) -> np.ndarray:
    hx, hy, hz = layout.heart_center
    return np.array([hx - 8.0, hy - 28.0, hz - 6.0])


def add_spine(scene: Scene, layout: Layout) -> None:
    """Bodies (cortex + trabecular core), discs, posterior elements, canal and foramina."""
    names = layout.level_names()
    verts = layout.vertebrae
    # Discs first: the bodies' cortical endplates are painted over their edges.
    for upper, lower in itertools.pairwise(names):
        a, b = verts[upper], verts[lower]
        disc = EllipticSlab((0.0, 0.5 * (a.y_mm + b.y_mm)),
                            (0.5 * (a.ax_mm + b.ax_mm) - 1.0, 0.5 * (a.ay_mm + b.ay_mm) - 1.0),
                            b.z_hi, a.z_lo)  # fmt: skip
        scene.add(disc, HU_DISC, f"disc_{upper}_{lower}")
    for name, v in verts.items():
        if name == "S1":
            continue
        scene.add(v.body(), HU_CORTICAL, f"vertebral_body_{name}")
        scene.add(v.body(1.3), HU_TRABECULAR, f"vertebral_body_{name}")
        scene.add(_posterior_elements(v, layout), HU_POSTERIOR, f"posterior_elements_{name}")
    _add_sacrum_pelvis(scene, layout)
    # Canal: epidural fat, the thecal sac and (above L1) the cord, continuous over all levels.
    vs = list(reversed(verts.values()))
    zk = tuple(v.z_mm for v in vs)
    canal = ProfiledCylinder(zk, tuple(0.0 for _ in vs), tuple(v.canal_y_mm for v in vs),
                             tuple(v.canal_rx_mm for v in vs), tuple(v.canal_ry_mm for v in vs),
                             verts["S1"].z_lo, layout.apex_z + 40.0)  # fmt: skip
    scene.add(canal, HU_EPIDURAL_FAT, "spinal_canal")
    scene.add(canal.shrunk(2.0), HU_CSF, "spinal_canal")
    cord = ProfiledCylinder(zk, tuple(0.0 for _ in vs), tuple(v.canal_y_mm - 1.0 for v in vs),
                            tuple(5.0 for _ in vs), tuple(4.0 for _ in vs), verts["L1"].z_mm,
                            layout.apex_z + 40.0)  # fmt: skip
    scene.add(cord, HU_CORD, "spinal_canal")
    for upper, lower in itertools.pairwise(names):
        a = verts[upper]
        zc = 0.5 * (a.z_lo + verts[lower].z_hi)
        for sx, side in ((-1.0, "right"), (1.0, "left")):
            c = (sx * (a.canal_rx_mm + 6.0), a.canal_y_mm - 3.0, zc)
            scene.add(Ellipsoid(c, (4.5, 5.0, 6.0)), -40.0, f"foramen_{upper}_{lower}_{side}")


def foramen_center(layout: Layout, upper: str, side: str) -> np.ndarray:
    names = layout.level_names()
    lower = names[names.index(upper) + 1]
    a = layout.vertebrae[upper]
    zc = 0.5 * (a.z_lo + layout.vertebrae[lower].z_hi)
    sx = -1.0 if side == "right" else 1.0
    return np.array([sx * (a.canal_rx_mm + 6.0), a.canal_y_mm - 3.0, zc])


def _posterior_elements(v: Vertebra, layout: Layout) -> Shape:
    """Pedicles, laminae, spinous and transverse processes, facets as a union of tubes."""
    zc, cy, crx, cry = v.z_mm, v.canal_y_mm, v.canal_rx_mm, v.canal_ry_mm
    lumbar = v.level.startswith("L")
    pr = 4.8 if lumbar else 3.8
    parts: list[Shape] = []
    for sx in (-1.0, 1.0):
        ped_front = (sx * (crx + pr - 1.0), v.y_mm + v.ay_mm * 0.55, zc)
        ped_back = (sx * (crx + pr - 1.0), cy + cry * 0.4, zc)
        parts.append(Tube(np.array([ped_front, ped_back]), np.array([pr, pr])))
        lam_end = (0.0, cy + cry + 3.0, zc - 2.0)
        # Laminae are plates, not rods: each reaches from its pedicles' level down towards the
        # disc below (lumbar ~20-25 mm tall), so bone closes the canal behind on most slices.
        for dz in LAMINA_DZ_FRACTIONS:
            shift = np.array([0.0, 0.0, dz * (v.z_hi - v.z_lo)])
            ends = np.array([ped_back, lam_end]) + shift
            parts.append(Tube(ends, np.array([3.5, 3.5])))
        if lumbar:
            tip = (sx * (crx + 34.0), cy - 4.0, zc)
            big = v.level == "L5" and layout.transitional
            parts.append(Tube(np.array([ped_back, tip]), np.array([4.0, 3.0])))
            if big:  # sacralised L5: broad transverse processes resting on the sacral alae
                parts.append(
                    Ellipsoid((sx * 36.0, v.y_mm + 12.0, v.z_lo - 4.0), (20.0, 16.0, 13.0))
                )
        else:
            tip = (sx * (crx + 24.0), cy + 9.0, zc + 2.0)
            parts.append(Tube(np.array([ped_back, tip]), np.array([4.0, 3.2])))
        for dz in (v.z_hi - zc + 1.5, v.z_lo - zc - 1.5):
            parts.append(Ellipsoid((sx * (crx + pr), cy + 4.0, zc + dz), (4.5, 5.0, 4.5)))
    sp_len, sp_drop = (28.0, 4.0) if lumbar else (30.0, 16.0)
    spinous = Tube(np.array([(0.0, cy + cry + 3.0, zc - 2.0), (0.0, cy + cry + sp_len, zc - sp_drop)]),
                   np.array([4.5 if lumbar else 3.5, 4.0 if lumbar else 3.0]))  # fmt: skip
    parts.append(spinous)
    if lumbar:  # lumbar spinous processes are tall plates, not rods
        parts.append(
            Ellipsoid((0.0, cy + cry + sp_len * 0.6, zc - sp_drop * 0.6), (3.5, 11.0, 9.0))
        )
    # The pedicles (and a sacralised L5's broad processes) meet the body at its cortex, as in
    # life: they do not run as dense rods through its cancellous core.
    return Subtract(Union(tuple(parts)), (v.body(),))


def _add_sacrum_pelvis(scene: Scene, layout: Layout) -> None:
    s1 = layout.vertebrae["S1"]
    y0 = s1.y_mm
    scene.add(s1.body(), HU_CORTICAL, "sacrum")
    scene.add(s1.body(1.3), HU_TRABECULAR, "sacrum")
    spine = np.array(
        [(0.0, y0 + 6.0, s1.z_lo + 4.0), (0.0, y0 + 30.0, -65.0), (0.0, y0 + 52.0, -100.0)]
    )
    rad = np.array([21.0, 15.0, 8.0])
    alae = [Ellipsoid((sx * 36.0, y0 + 10.0, -14.0), (24.0, 19.0, 17.0)) for sx in (-1.0, 1.0)]
    # As in life, each lateral mass reaches back and out to the ilium (the sacroiliac joint is
    # a few mm of cartilage), and S1's fused laminae close the sacral canal behind.
    joint = [np.array([(sx * 36.0, y0 + 10.0, -14.0), (sx * 62.0, y0 + 35.0, -14.0)])
             for sx in (-1.0, 1.0)]  # fmt: skip
    joint_rad = np.array([13.0, 11.0])
    arch_center = (0.0, s1.canal_y_mm, 0.5 * (s1.z_lo + s1.z_hi))
    sacrum = Union((Tube(spine, rad), *alae, *(Tube(j, joint_rad) for j in joint),
                    Ellipsoid(arch_center, (19.0, 12.0, 15.0))))  # fmt: skip
    scene.add(Subtract(sacrum, (s1.body(),)), 600.0, "sacrum")
    inner = Union(
        (Tube(spine, rad - 2.0), *[Ellipsoid(a.center, (21.5, 16.5, 14.5)) for a in alae],
         *(Tube(j, joint_rad - 2.5) for j in joint), Ellipsoid(arch_center, (16.5, 9.5, 12.5)))
    )  # fmt: skip
    scene.add(Subtract(inner, (s1.body(),)), 260.0, "sacrum")
    for sx, side in ((-1.0, "right"), (1.0, "left")):
        # Iliac wing: a thin curved plate from the sacroiliac joint flaring anterolaterally.
        d = np.array([sx * 75.0, -70.0, 0.0])
        d /= np.linalg.norm(d)
        normal = np.cross(d, [0.0, 0.0, 1.0])
        rot = np.stack([d, normal, [0.0, 0.0, 1.0]], axis=1)
        center = (sx * 95.0, y0 + 5.0, -40.0)
        scene.add(Ellipsoid(center, (56.0, 7.0, 62.0), rot), 800.0, f"ilium_{side}")
        scene.add(Ellipsoid(center, (54.0, 5.0, 60.0), rot), 250.0, f"ilium_{side}")


def add_ribs(scene: Scene, layout: Layout) -> None:
    """Rib pairs on ``layout.rib_levels`` following the chest wall and sloping down anteriorly."""
    body = layout.body
    sternum_top = layout.vertebrae["T2"].z_mm
    sternum_bottom = layout.vertebrae["T9"].z_mm
    n_ribs = len(layout.rib_levels)
    cortex: list[tuple[np.ndarray, str]] = []
    for n, level in enumerate(layout.rib_levels, start=1):
        v = layout.vertebrae[level]
        floating = n >= 11
        theta_end = np.deg2rad(160.0 if n <= 7 else (125.0 if n <= 10 else 75.0 - 5 * (n - 11)))
        drop = 25.0 + 4.0 * min(n, 8)
        for sx, side in ((-1.0, "right"), (1.0, "left")):
            thetas = np.linspace(np.deg2rad(22.0), theta_end, 14)
            pts = [(sx * (v.ax_mm + 2.0), v.y_mm + v.ay_mm * 0.5, v.z_mm + 2.0),
                   (sx * (v.canal_rx_mm + 22.0), v.canal_y_mm + 6.0, v.z_mm + 3.0)]  # fmt: skip
            for t, th in enumerate(thetas):
                z = v.z_mm + 3.0 - drop * (t / (len(thetas) - 1)) ** 1.3
                zk = np.asarray(body.z_knots)
                ax = float(np.interp(z, zk, body.ax)) - 24.0
                ay = float(np.interp(z, zk, body.ay)) - 24.0
                cy = float(np.interp(z, zk, body.cy))
                if n == 1:
                    ax *= 0.55
                elif n == 2:
                    ax *= 0.75
                pts.append((sx * ax * np.sin(th), cy + ay * np.cos(th), z))
            arr = np.array(pts)
            name = f"rib_{side}_{n}" if n <= 12 else f"rib_{side}_{n}_lumbar"
            cortex.append((arr, name))
            if not floating and n <= 10 and n_ribs >= n:
                end = arr[-1]
                zs = float(np.clip(end[2] - 8.0, sternum_bottom, sternum_top))
                cart = np.array([end, (sx * 14.0, end[1] - 6.0, zs)])
                scene.tubes(cart, 4.0, HU_CARTILAGE, "costal_cartilage")
    for arr, name in cortex:
        scene.tubes(arr, 4.5, 850.0, name)
    for arr, name in cortex:
        scene.tubes(arr, 2.6, 260.0, name)
    # Sternum: a flat bar in the anterior chest wall.
    z_mid = 0.5 * (sternum_top + sternum_bottom)
    zk = np.asarray(body.z_knots)
    front = float(np.interp(z_mid, zk, body.cy)) - float(np.interp(z_mid, zk, body.ay)) + 16.0
    scene.add(
        EllipticSlab((0.0, front), (16.0, 6.0), sternum_bottom, sternum_top + 20.0),
        650.0,
        "sternum",
    )
    scene.add(EllipticSlab((0.0, front), (14.0, 4.2), sternum_bottom + 2, sternum_top + 18.0), 250.0,
              "sternum")  # fmt: skip
