"""Which anatomical compartment each cement voxel lies in, looked up on the anatomy's work grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cementscan.anatomy.model import Anatomy

# Compartment codes 0 and 1 are fixed; the anatomy's masks get codes from 2 on.
UNASSIGNED = 0  # soft tissue outside every named structure: decided by shape and position
BONE = 1  # posterior elements or other bone (a pedicle's needle track, a cortical rim)

# Structure masks and the category cement inside them takes, highest priority first: a voxel in
# two masks (coarse 2 mm masks overlap at their edges) takes the first. Vertebral bodies and
# discs are listed per level (see compartments_for); the heart counts as right heart because
# venous cement reaches only the right heart (clinical-evidence.md §3: paravertebral veins ->
# IVC/azygos -> RA/RV -> pulmonary arteries).
STRUCTURES: tuple[tuple[str, str], ...] = (
    ("spinal_canal", "epidural"),
    ("foramina", "foraminal"),
    ("ivc", "ivc"),
    ("svc", "svc"),
    ("azygos", "azygos"),
    ("right_heart", "right_heart"),
    ("heart", "right_heart"),
    ("lung_right", "pulmonary_artery"),
    ("lung_left", "pulmonary_artery"),
    ("pulmonary_vessels", "pulmonary_artery"),
)
# Not "bone": it is every work voxel of >= 200 HU, cement included.
BONE_MASKS = ("posterior_elements",)
# Veins looked up before the vertebral bodies: their masks are drawn outside the bodies' bone
# (anatomy/vessels.py), so where a coarse elliptic body mask overlaps one it over-reaches into
# the vein beside the body; the azygos lies against the thoracic bodies' right-anterolateral
# surface, and cement there is a venous leak (clinical-evidence.md §1.1 type S, §3).
VEINS_BEFORE_BODIES = ("ivc", "svc", "azygos")


@dataclass(frozen=True)
class Compartment:
    """One code of the voxel map: its category and the mask that defines it."""

    code: int
    category: str | None  # None for UNASSIGNED and BONE: decided later
    mask_name: str | None  # the vertebral body / disc mask, or the first structure mask


@dataclass(frozen=True)
class CompartmentMap:
    """The anatomy's compartments and the (mask, code) lookups in priority order."""

    compartments: tuple[Compartment, ...]
    lookups: tuple[tuple[str, int], ...]


def compartments_for(anatomy: Anatomy) -> CompartmentMap:
    """Codes for the anatomy's vertebral bodies, discs and structures, and their lookup order."""
    out = [Compartment(UNASSIGNED, None, None), Compartment(BONE, None, None)]
    lookups: list[tuple[str, int]] = []
    for prefix, category in (("vertebral_body_", "intravertebral"), ("disc_", "disc")):
        for name in sorted(n for n in anatomy.masks if n.startswith(prefix)):
            lookups.append((name, len(out)))
            out.append(Compartment(len(out), category, name))
    n_spine = len(lookups)
    # The lungs and pulmonary vessels share one code (so an embolus is one piece whatever masks
    # it spans; its lung is decided afterwards), as do the heart and right heart.
    by_category: dict[str, int] = {}
    for name, category in STRUCTURES:
        if name not in anatomy.masks:
            continue
        shared = category in ("pulmonary_artery", "right_heart")
        if not shared or category not in by_category:
            by_category[category] = len(out)
            out.append(Compartment(len(out), category, name))
        lookups.append((name, by_category[category] if shared else len(out) - 1))
    lookups.extend((name, BONE) for name in BONE_MASKS if name in anatomy.masks)
    veins = [item for item in lookups[n_spine:] if item[0] in VEINS_BEFORE_BODIES]
    lookups = veins + [item for item in lookups if item not in veins]
    return CompartmentMap(tuple(out), tuple(lookups))


def voxel_codes(anatomy: Anatomy, cmap: CompartmentMap, lps_mm: np.ndarray) -> np.ndarray:
    """Compartment code of each LPS point (n, 3), from its nearest work-grid voxel."""
    grid = anatomy.grid
    index = np.rint(grid.to_index(lps_mm)).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.asarray(grid.shape)), axis=1)
    codes = np.zeros(len(lps_mm), np.int16)
    where = np.flatnonzero(inside)
    i, j, k = index[where].T
    pending = np.ones(len(where), bool)
    for name, code in cmap.lookups:
        if not pending.any():
            break
        hit = anatomy.masks[name][i, j, k] & pending
        codes[where[hit]] = code
        pending &= ~hit
    return codes


def mask_fraction(anatomy: Anatomy, name: str, lps_mm: np.ndarray) -> float:
    """Share of the points that fall in mask ``name`` (0 when it does not exist)."""
    if name not in anatomy.masks or len(lps_mm) == 0:
        return 0.0
    return float(anatomy.mask_at(name, lps_mm).mean())
