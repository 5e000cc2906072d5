"""Anatomy that removes look-alikes: veins full of undiluted contrast, calcified arterial walls.

Anatomy never finds cement (DESIGN.md §5); it may only take away what it shows is something else.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from cementscan.anatomy.model import Anatomy
from cementscan.io.volume import CTVolume

if TYPE_CHECKING:
    from cementscan.cement.candidates import Candidate

# Share of a component's voxels inside a mask for it to be "in" that structure.
INSIDE_FRACTION = 0.5
# Undiluted contrast (chest-cta SVC: 1,300-3,071 HU) fills the vein where it was injected: cement
# there cannot be told from it, so the vein is not assessable (DESIGN.md §4) and nothing in it
# is reported. The mask is widened by one work voxel for partial volume at the lumen's edge.
CONTRAST_VEIN_DILATION = 1
# Arterial calcification lies in the wall (clinical-evidence.md §4, calcification +100..+400,
# dense plaques more): a component without a thick core within this many work voxels of the
# aorta is a plaque. Cement never reaches the aorta (venous route only).
ARTERY_WALL_DILATION = 2
ARTERIES = ("aorta",)
# Veins that carry contrast injected into an arm vein undiluted (anatomy/contrast.py).
INJECTION_VEINS = ("svc", "brachiocephalic_vein_right", "brachiocephalic_vein_left")
# Undiluted contrast from an arm vein streams on through the SVC into the right atrium before it
# mixes, so when the SVC side is dense the right heart is not assessable either.
DOWNSTREAM_OF = {"svc": ("right_heart",), "brachiocephalic_vein_right": ("svc", "right_heart"),
                 "brachiocephalic_vein_left": ("svc", "right_heart")}  # fmt: skip
# Cement outside bone goes where the veins of a treated vertebra take it (clinical-evidence.md
# §2.2: disc, canal, foramen, paravertebral veins, azygos, IVC, right heart, pulmonary arteries).
# A thin extra-osseous component (no thick core) farther than ROUTE_MARGIN work voxels from all of
# these (or, for the lungs, outside them) is a clip, a wire, a calcification or contrast in an
# arm vein, and is removed.
ROUTE_PREFIXES = ("vertebral_body", "disc", "spinal_canal", "foramina", "posterior_elements",
                  "ivc", "svc", "azygos", "heart", "right_heart", "pulmonary_vessels")  # fmt: skip
ROUTE_LUNGS = ("lung_right", "lung_left")
ROUTE_MARGIN = 5  # 10 mm on the 2 mm work grid
ROUTE_KINDS = ("loose",)
# Cement beside metal is cement around a cement-augmented pedicle screw: inside a vertebral body.
# Dense material beside metal anywhere else (a hip prosthesis, a plate) is the metal's halo.
AUGMENTATION_MARGIN = 2  # work voxels around the vertebral bodies


def remove_lookalikes(
    candidates: list[Candidate],
    anatomy: Anatomy,
    labels: np.ndarray,
    volume: CTVolume,
    boxes: list[tuple[slice, ...] | None],
    opacified: bool = False,
) -> list[Candidate]:
    """``candidates`` with look-alikes shown by ``anatomy`` set to confidence 0 (kind says why).

    ``opacified``: the CT itself shows contrast in its vessels; then the injection veins may
    hold undiluted contrast even where the anatomy's own measure missed it."""
    dense = list(anatomy.dense_contrast_veins)
    if opacified:
        dense.extend(INJECTION_VEINS)
    for vein in anatomy.dense_contrast_veins:
        dense.extend(DOWNSTREAM_OF.get(vein, ()))
    contrast = _union(anatomy, tuple(dict.fromkeys(dense)), CONTRAST_VEIN_DILATION)
    arteries = _union(anatomy, ARTERIES, ARTERY_WALL_DILATION)
    route = _route(anatomy)
    bodies = _union(
        anatomy,
        tuple(n for n in anatomy.masks if n.startswith("vertebral_body")),
        AUGMENTATION_MARGIN,
    )
    out = []
    for cand in candidates:
        box = boxes[cand.label - 1] if cand.label - 1 < len(boxes) else None
        if cand.confidence <= 0.0 or box is None:
            out.append(cand)
            continue
        ijk = np.argwhere(labels[box] == cand.label) + np.array([s.start for s in box])
        points = volume.index_to_lps(ijk)
        if contrast is not None and _inside(anatomy, contrast, points) >= INSIDE_FRACTION:
            out.append(replace(cand, confidence=0.0, kind="dense_contrast_vein"))
            continue
        thin = cand.features.get("core_ml", 0.0) <= 0.0
        if thin and arteries is not None and _inside(anatomy, arteries, points) >= INSIDE_FRACTION:
            out.append(replace(cand, confidence=0.0, kind="arterial_calcification"))
            continue
        if cand.features.get("near_metal", 0.0) and (
            bodies is None or _inside(anatomy, bodies, points) < INSIDE_FRACTION
        ):
            out.append(replace(cand, confidence=0.0, kind="metal_halo"))
            continue
        if (
            cand.kind in ROUTE_KINDS
            and route is not None
            and _inside(anatomy, route, points) == 0.0
        ):
            out.append(replace(cand, confidence=0.0, kind="outside_cement_route"))
            continue
        out.append(cand)
    return out


def _route(anatomy: Anatomy) -> np.ndarray | None:
    names = tuple(n for n in anatomy.masks if n.startswith(ROUTE_PREFIXES))
    near = _union(anatomy, names, ROUTE_MARGIN)
    lungs = _union(anatomy, ROUTE_LUNGS, 0)
    if near is None or lungs is None:
        return near if lungs is None else lungs
    return near | lungs


def _union(anatomy: Anatomy, names: tuple[str, ...], dilation: int) -> np.ndarray | None:
    masks = [anatomy.masks[n] for n in names if n in anatomy.masks and anatomy.masks[n].any()]
    if not masks:
        return None
    union = np.logical_or.reduce(masks)
    if dilation:
        union = ndimage.binary_dilation(union, iterations=dilation)
    return np.asarray(union, dtype=bool)


def _inside(anatomy: Anatomy, mask: np.ndarray, points: np.ndarray) -> float:
    index = np.rint(anatomy.grid.to_index(points)).astype(int)
    ok = np.all((index >= 0) & (index < np.asarray(mask.shape)), axis=1)
    hits = np.zeros(len(points), bool)
    hits[ok] = mask[tuple(index[ok].T)]
    return float(hits.mean()) if len(points) else 0.0
