"""Anatomy that removes look-alikes: veins full of undiluted contrast, calcified arterial walls.

Anatomy never finds cement (DESIGN.md §5); it may only take away what it shows is something else.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from cementscan.anatomy.heart import (
    INFLOW_VEINS,
    RIGHT_ATRIUM,
    atrium_inflow,
    contrast_hidden_regions,
)
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
# Undiluted contrast from a brachiocephalic vein goes on through the SVC. It streams on into the
# right atrium near the SVC inflow, but mixes there with the unopacified IVC return: that part
# of the atrium only is not assessable (anatomy/heart.py contrast_hidden_regions), never the
# right ventricle.
DOWNSTREAM_OF = {"brachiocephalic_vein_right": ("svc",), "brachiocephalic_vein_left": ("svc",)}
# Phases in which the injection veins may hold undiluted contrast the anatomy's own measure
# missed (a thin column averaged down on the work grid). In the portal-venous phase the
# contrast has long passed: there only the anatomy's measure counts (a cement spike at the
# SVC-atrium junction must stay).
UNMEASURED_CONTRAST_PHASES = ("arterial", "unknown")
# Cement outside bone goes where the veins of a treated vertebra take it (clinical-evidence.md
# §2.2: disc, canal, foramen, paravertebral veins, azygos, IVC, right heart, pulmonary arteries).
# A thin extra-osseous component (no thick core) farther than ROUTE_MARGIN work voxels from all of
# these (or, for the lungs, outside them) is a clip, a wire, a calcification or contrast in an
# arm vein, and is removed.
ROUTE_SPINE = ("vertebral_body", "disc", "spinal_canal", "foramina", "posterior_elements")
ROUTE_VESSELS = ("ivc", "svc", "azygos", "heart", "right_heart", "pulmonary_vessels")
ROUTE_LUNGS = ("lung_right", "lung_left")
ROUTE_MARGIN = 5  # 10 mm on the 2 mm work grid
# Imported (TotalSegmentator) vessel and heart masks are drawn to the wall, not coarse priors:
# beyond partial volume, what lies outside them lies outside (a calcification beside the IVC).
# Leaks beside the spine (epidural, paravertebral) keep ROUTE_MARGIN: it has no canal mask.
ROUTE_MARGIN_IMPORTED_VESSELS = 2
# A focus inside an opacified lumen is judged the same way: a lumen off every route (the aortic
# root's valve calcification ringed by contrast) is an artery's. So is a fill's satellite
# (judge.py SATELLITE_MIN_ML): leak cement lies on the routes out of its body.
ROUTE_KINDS = ("loose", "intraluminal", "satellite")
# Cement beside metal is cement around a cement-augmented pedicle screw: inside a vertebral body.
# Dense material beside metal anywhere else (a hip prosthesis, a plate, a stent graft) is the
# metal's halo, unless it is a fill leaking out of its body past a screw: a fill's worth of it
# inside a vertebral body (FILL_IN_BODY_ML) and more of it beyond the metal's rim (candidates.py
# METAL_RIM_MM, off_metal_ml) than there is metal, where blooming does not reach (the all-leaks
# preset at 2.5 mm: a 4 ml fill, its leaks and an IVC cast, 9 ml beyond the rim of 1.8 ml of
# pedicle screws, in one component).
FILL_IN_BODY_ML = 1.0
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

    ``opacified``: the CT itself shows contrast in its vessels; then, in the arterial or an
    unknown phase, the injection veins may hold undiluted contrast even where the anatomy's own
    measure missed it. The right atrium near the SVC inflow goes with the veins the anatomy
    measured (the same regions the summary marks not assessable)."""
    hidden = contrast_hidden_regions(anatomy.dense_contrast_veins, anatomy.masks)
    dense = [name for name in hidden if name != RIGHT_ATRIUM]
    if opacified and anatomy.contrast_phase in UNMEASURED_CONTRAST_PHASES:
        dense.extend(INFLOW_VEINS)  # where contrast injected into an arm vein arrives undiluted
    for vein in anatomy.dense_contrast_veins:
        dense.extend(DOWNSTREAM_OF.get(vein, ()))
    if RIGHT_ATRIUM in hidden:
        inflow = atrium_inflow(anatomy.masks, anatomy.grid.spacing_mm)
        anatomy = replace(anatomy, masks={**anatomy.masks, RIGHT_ATRIUM: inflow})
        dense.append(RIGHT_ATRIUM)
    # Each mask is a union of anatomy masks widened by some work voxels; it is looked up only at
    # the candidates tested against it, so it is built only around them (cropped, exact).
    present: dict[str, bool] = {}  # which masks have a voxel, shared by the unions
    contrast = _Union(anatomy, ((tuple(dict.fromkeys(dense)), CONTRAST_VEIN_DILATION),), present)
    arteries = _Union(anatomy, ((ARTERIES, ARTERY_WALL_DILATION),), present)
    vessel_margin = ROUTE_MARGIN_IMPORTED_VESSELS if anatomy.source == "imported" else ROUTE_MARGIN
    spine = tuple(n for n in anatomy.masks if n.startswith(ROUTE_SPINE))
    vessels = tuple(n for n in anatomy.masks if n.startswith(ROUTE_VESSELS))
    groups = ((spine, ROUTE_MARGIN), (vessels, vessel_margin), (ROUTE_LUNGS, 0))
    route = _Union(anatomy, groups, present)
    body_names = tuple(n for n in anatomy.masks if n.startswith("vertebral_body"))
    bodies = _Union(anatomy, ((body_names, AUGMENTATION_MARGIN),), present)
    out = []
    for cand in candidates:
        box = boxes[cand.label - 1] if cand.label - 1 < len(boxes) else None
        if cand.confidence <= 0.0 or box is None:
            out.append(cand)
            continue
        ijk = np.argwhere(labels[box] == cand.label) + np.array([s.start for s in box])
        points = volume.index_to_lps(ijk)
        if contrast.exists and contrast.inside(points) >= INSIDE_FRACTION:
            out.append(replace(cand, confidence=0.0, kind="dense_contrast_vein"))
            continue
        thin = cand.features.get("core_ml", 0.0) <= 0.0
        if thin and arteries.exists and arteries.inside(points) >= INSIDE_FRACTION:
            out.append(replace(cand, confidence=0.0, kind="arterial_calcification"))
            continue
        if cand.features.get("near_metal", 0.0) and not _augmented(cand, bodies, points):
            out.append(replace(cand, confidence=0.0, kind="metal_halo"))
            continue
        if cand.kind in ROUTE_KINDS and route.exists and route.inside(points) == 0.0:
            out.append(replace(cand, confidence=0.0, kind="outside_cement_route"))
            continue
        out.append(cand)
    return out


def _augmented(cand: Candidate, bodies: _Union, points: np.ndarray) -> bool:
    """Whether cement beside metal belongs to a treated vertebra (see FILL_IN_BODY_ML)."""
    if not bodies.exists:
        return False
    inside = bodies.inside(points)
    if inside >= INSIDE_FRACTION:
        return True
    fill_ml = inside * cand.volume_ml
    beyond_rim_ml = cand.features.get("off_metal_ml", 0.0)
    return fill_ml >= FILL_IN_BODY_ML and beyond_rim_ml > cand.features.get("metal_ml", 0.0)


class _Union:
    """The union of groups of anatomy masks, each group widened by its own number of work voxels
    (``binary_dilation`` with the 6-neighbourhood, iterated), evaluated at points on demand.

    Only masks with a voxel count (empty masks are left out; ``exists`` says whether any is left).
    The widened union at a point depends only on the masks within the widening of it, so it is
    computed on the points' bounding box grown by the widening: the same values as widening the
    whole grid.
    """

    def __init__(
        self,
        anatomy: Anatomy,
        groups: tuple[tuple[tuple[str, ...], int], ...],
        present: dict[str, bool],
    ) -> None:
        self.masks = anatomy.masks
        self.grid = anatomy.grid
        for names, _ in groups:
            for name in names:
                if name in self.masks and name not in present:
                    present[name] = bool(self.masks[name].any())
        self.groups = tuple(
            (tuple(n for n in names if present.get(n, False)), dilation)
            for names, dilation in groups
        )
        self.exists = any(names for names, _ in self.groups)

    def inside(self, points: np.ndarray) -> float:
        """Share of ``points`` (LPS mm) whose nearest work voxel is in the widened union."""
        index = np.rint(self.grid.to_index(points)).astype(int)
        shape = next(self.masks[n].shape for names, _ in self.groups for n in names)
        ok = np.all((index >= 0) & (index < np.asarray(shape)), axis=1)
        hits = np.zeros(len(points), bool)
        if ok.any():
            index = index[ok]
            found = np.zeros(len(index), bool)
            for names, dilation in self.groups:
                if names:
                    found |= self._group_at(names, dilation, index, shape)
            hits[ok] = found
        return float(hits.mean()) if len(points) else 0.0

    def _group_at(
        self, names: tuple[str, ...], dilation: int, index: np.ndarray, shape: tuple[int, ...]
    ) -> np.ndarray:
        low = np.maximum(index.min(axis=0) - dilation, 0)
        high = np.minimum(index.max(axis=0) + 1 + dilation, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
        union = np.zeros(tuple(int(n) for n in high - low), bool)
        for name in names:
            union |= self.masks[name][box].astype(bool, copy=False)
        if dilation and union.any():
            union = ndimage.binary_dilation(union, iterations=dilation)
        return np.asarray(union[tuple((index - low).T)], dtype=bool)
