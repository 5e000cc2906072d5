"""Spine compartments (discs, canal, foramina, posterior elements) from imported vertebra masks.

TotalSegmentator labels whole vertebrae and the spinal cord, but not discs, the canal or the
foramina, where cement leaks first (clinical-evidence.md §1). They follow from the vertebrae:
a disc is the gap between two bodies, the canal the hole the vertebral arch encloses, a foramen
the soft tissue beside the canal at the disc, the arch what is left of a vertebra without its
body. Masks are on the anatomy's work grid, named as classical anatomy names them.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from cementscan.anatomy.grid import WorkGrid
from cementscan.anatomy.model import Vertebra

# Two bodies farther apart than this (a missing vertebra, a crop) have no disc between them:
# lumbar discs are ~8-15 mm high, more at their front in lordosis.
DISC_MAX_HEIGHT_MM = 25.0
# The canal between two arches (at a disc) is carried over from the arches above and below it.
CANAL_BRIDGE_MM = 12.0
# An arch's ring is closed by this much before its hole is taken: at 2 mm voxels the laminae
# often meet the pedicles through a one-voxel gap.
RING_CLOSING_MM = 4.0
# Soft tissue lateral to the canal, at the disc and up into the lower part of the body above
# (the neural foramen lies between the pedicles; leaks there are "foraminal").
FORAMEN_DEPTH_MM = 12.0
FORAMEN_CRANIAL_FRACTION = 0.5
SOFT_TISSUE_MAX_HU = 200  # below cortex and cement: nerve root, fat, veins


def spine_compartments(
    vertebrae: dict[str, np.ndarray],
    bodies: dict[str, np.ndarray],
    levels: tuple[Vertebra, ...],
    cord: np.ndarray | None,
    grid: WorkGrid,
) -> dict[str, np.ndarray]:
    """``disc_<upper>_<lower>``, ``spinal_canal``, ``foramina`` and ``posterior_elements``.

    ``vertebrae`` and ``bodies`` map a level ("L4") to its whole vertebra and its body on the
    work grid; ``levels`` lists the bodies cranial to caudal; ``cord`` is the spinal cord label.
    """
    masks: dict[str, np.ndarray] = {}
    if not vertebrae:
        return masks
    bone = np.logical_or.reduce(list(vertebrae.values()))
    discs = _discs(bodies, levels, grid)
    masks.update({name: disc & ~bone for name, (disc, _) in discs.items()})
    posterior = np.zeros(grid.shape, bool)
    for level, vertebra in vertebrae.items():
        if level in bodies:
            posterior |= vertebra & ~bodies[level]
    if posterior.any():
        masks["posterior_elements"] = posterior
    canal = _canal(bone, cord, grid) & ~bone
    if canal.any():
        masks["spinal_canal"] = canal
        foramina = _foramina(canal, bone, discs, grid)
        if foramina.any():
            masks["foramina"] = foramina
    return masks


def _discs(
    bodies: dict[str, np.ndarray], levels: tuple[Vertebra, ...], grid: WorkGrid
) -> dict[str, tuple[np.ndarray, float]]:
    """Each disc between consecutive bodies (the slices between the upper body's lowest and the
    lower body's highest voxel, column by column, where both bodies are), with the upper body's
    height in mm (the foramen reaches up into it)."""
    out: dict[str, tuple[np.ndarray, float]] = {}
    k = np.arange(grid.shape[2])[None, None, :]
    max_gap = int(round(DISC_MAX_HEIGHT_MM / grid.spacing_mm))
    for upper, lower in itertools.pairwise(levels):
        if upper.level not in bodies or lower.level not in bodies:
            continue
        top, bottom = bodies[upper.level], bodies[lower.level]
        both = top.any(axis=2) & bottom.any(axis=2)
        if not both.any():
            continue
        # z index grows cranially (WorkGrid): the upper body's floor, the lower body's roof.
        floor = np.where(top, k, grid.shape[2]).min(axis=2)
        roof = np.where(bottom, k, -1).max(axis=2)
        gap = both & (floor > roof + 1) & (floor - roof - 1 <= max_gap)
        disc = gap[:, :, None] & (k > roof[:, :, None]) & (k < floor[:, :, None])
        if disc.any():
            height_mm = upper.z_range_mm[1] - upper.z_range_mm[0]
            out[f"disc_{upper.level}_{lower.level}"] = (disc, float(height_mm))
    return out


def _canal(bone: np.ndarray, cord: np.ndarray | None, grid: WorkGrid) -> np.ndarray:
    """The spinal canal: on each axial slice the hole the vertebra's ring (body and arch)
    encloses, the one around the cord where there is one, else the largest (not the transverse
    foramina); carried across the discs between arches; the cord itself where no ring is."""
    closing = max(1, int(round(RING_CLOSING_MM / grid.spacing_mm)))
    disk = ndimage.generate_binary_structure(2, 1)
    canal = np.zeros(grid.shape, bool)
    for k in np.flatnonzero(bone.any(axis=(0, 1))):
        ring = bone[:, :, k]
        closed = ndimage.binary_closing(ring, structure=disk, iterations=closing, border_value=0)
        labels, count = ndimage.label(ndimage.binary_fill_holes(closed) & ~closed)
        if not count:
            continue
        if cord is not None and cord[:, :, k].any():
            near_cord = ndimage.binary_dilation(cord[:, :, k], iterations=2)
            keep = np.unique(labels[near_cord & (labels > 0)])
        else:
            keep = np.array([int(np.argmax(np.bincount(labels.ravel())[1:])) + 1])
        canal[:, :, k] = np.isin(labels, keep)
    bridge = int(round(CANAL_BRIDGE_MM / grid.spacing_mm))
    present = np.flatnonzero(canal.any(axis=(0, 1)))
    for gap in sorted(set(range(grid.shape[2])) - set(present.tolist())):
        below, above = present[present < gap], present[present > gap]
        if len(below) and len(above) and gap - below[-1] <= bridge and above[0] - gap <= bridge:
            canal[:, :, gap] = canal[:, :, below[-1]] | canal[:, :, above[0]]
    if cord is not None:
        canal |= cord
    return canal


def _foramina(
    canal: np.ndarray,
    bone: np.ndarray,
    discs: dict[str, tuple[np.ndarray, float]],
    grid: WorkGrid,
) -> np.ndarray:
    """Soft tissue lateral to the canal (left and right, at the canal's own depth), from each
    disc up into the lower half of the body above it."""
    depth = max(1, int(round(FORAMEN_DEPTH_MM / grid.spacing_mm)))
    sideways = np.zeros((2 * depth + 1, 1, 1), bool)
    sideways[:, 0, 0] = True
    beside = ndimage.binary_dilation(canal, structure=sideways) & ~canal & ~bone
    beside &= grid.hu < SOFT_TISSUE_MAX_HU
    slab = np.zeros(grid.shape[2], bool)
    for disc, height_mm in discs.values():
        ks = np.flatnonzero(disc.any(axis=(0, 1)))
        reach = int(round(FORAMEN_CRANIAL_FRACTION * height_mm / grid.spacing_mm))
        slab[ks.min() : min(ks.max() + 1 + reach, grid.shape[2])] = True
    return beside & slab[None, None, :]
