"""Coarse context computed from the CT alone: body, lungs, bone and blood pools on a subsampled grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cementscan.anatomy.body import LABEL_DTYPE, fill_holes
from cementscan.anatomy.spine import enclosure_score
from cementscan.boxes import dilate_box
from cementscan.cement.calibration import (
    OPACIFIED_VESSEL_HU,
    blood_level_hu,
    lung_vessel_level_hu,
)

CONTEXT_MM = 2.0  # the context grid's in-plane and through-plane step (about the anatomy grid)
BODY_HU = -400  # between air/lung (< -500) and fat (-100)
AIR_HU = -500  # lung parenchyma ~ -850; vessels, nodules and soft tissue above
LUNG_MIN_ML = 150.0  # air inside the body larger than this is lung (bowel gas pockets are smaller)
LUNG_NEIGHBOURHOOD_MM = 10.0  # a voxel is "in lung" when lung air surrounds it within this
LUNG_AIR_FRACTION = 0.3  # ... by at least this fraction (vessels and emboli are thin)
LUNG_CORE_FRACTION = 0.6  # deep lung (calibration of vessel density): ribs and heart excluded
BONE_HU = 200  # cortex and dense trabecular bone
# Dense structures this large are skeleton (ribs, spine) or opacified great vessels, not foci in
# the lung: lung foci are looked for outside them. Emboli are < 1 mL (clinical-evidence.md §2.2:
# small, in peripheral vessels).
BIG_DENSE_ML = 3.0
BRANCH_OF_POOL = 1.3  # a lung vessel reads up to this much of its pool (noise, none above)
# Opacified blood pools (aorta, pulmonary arteries, heart, enhanced IVC): contrast-filled blood is
# a homogeneous region above unenhanced blood (30-60 HU) and enhanced parenchyma's usual level
# (CTPA lumen >= 200 HU, portal-venous ~150; clinical-evidence.md §4). Bone of the same mean
# density is not homogeneous: cortex and trabeculae vary over a few mm, and osteoporotic
# trabecular bone (the treated population) reads only 46-80 HU (§4). So a pool is where the
# local standard deviation over 3 cells (~6 mm) is small, at POOL_HU, in a region of at least
# POOL_MIN_ML (a few cm of a lumen).
POOL_HU = (150.0, 800.0)
POOL_STD_HU = 30.0
POOL_MIN_ML = 2.0
# Marrow can be as smooth and as dense as enhanced blood (a portal-venous scan's vertebral bodies
# read 170-190 HU: abdomen-portal-dicom), but its cortex encloses it: from most of its cells, a
# shell of uneven tissue denser than the region's own level lies in nearly every in-plane
# direction within a vertebral body's half-width. Around a lumen lie wall, fat, lung, myocardium
# and brighter pools, which are smooth themselves (the left heart beside the right ventricle).
# Real CTs' pools: at most 0.31 of cells enclosed (a descending aorta beside the spine);
# vertebral marrow 0.64-0.76, the phantoms' 0.89-1.0.
MARROW_OVER_POOL_HU = 100.0
MARROW_REACH_MM = 32.0
MARROW_MIN_DIRECTIONS = 6  # of 8
MARROW_MIN_SHARE = 0.5
# A dense focus punches a hole into its pool's smoothness: its half-width, its partial-volume rim
# and the 3-cell window (emboli 2-5 mm wide: ~6 mm). The pool is widened by as much.
POOL_WIDEN_MM = 6.0


@dataclass(frozen=True, eq=False)
class Context:
    """Boolean masks on the context grid: voxel (a, b, c) covers the CT voxels
    ``[a*step[0]:(a+1)*step[0], b*step[1]:..., c*step[2]:...]``."""

    step: tuple[int, int, int]
    body: np.ndarray
    lung: np.ndarray  # lung parenchyma and the vessels and foci inside it
    lung_core: np.ndarray  # deep lung, away from the chest wall, mediastinum and diaphragm
    bone: np.ndarray
    # Homogeneous opacified blood (see POOL_HU), widened by POOL_WIDEN_MM so that the hole a
    # dense focus punches into the pool's smoothness is still "in the pool".
    pool: np.ndarray
    pool_values: np.ndarray  # HU of the pool's own cells (before widening), for calibration

    def lookup(self, mask: np.ndarray, ijk: np.ndarray) -> np.ndarray:
        """``mask`` at CT voxel indices ``ijk`` (n, 3)."""
        index = np.minimum(ijk // np.asarray(self.step), np.asarray(mask.shape) - 1)
        return np.asarray(mask[index[:, 0], index[:, 1], index[:, 2]], dtype=bool)

    def crop(
        self, mask: np.ndarray, box: tuple[slice, ...], axes: tuple[int, ...] = (0, 1, 2)
    ) -> np.ndarray:
        """``mask`` expanded to the CT voxels of ``box`` (nearest), its axes in the order ``axes``."""
        index = [
            np.minimum(np.arange(s.start, s.stop) // st, n - 1)
            for s, st, n in zip(box, self.step, mask.shape, strict=True)
        ]
        return np.asarray(mask.transpose(axes)[np.ix_(*(index[a] for a in axes))], dtype=bool)


def compute_context(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> Context:
    step = tuple(max(1, int(round(CONTEXT_MM / s))) for s in spacing_mm)
    # A C-ordered copy: the masks below are C-ordered (ndimage's outputs), and mixing memory
    # orders in elementwise operations is slow.
    coarse = np.ascontiguousarray(hu[:: step[0], :: step[1], :: step[2]])
    cell_mm = np.asarray(spacing_mm) * np.asarray(step)
    dense = coarse > BODY_HU
    labels, count = ndimage.label(dense, output=LABEL_DTYPE)
    body = np.zeros(coarse.shape, bool)
    if count:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        body = fill_holes(labels == int(np.argmax(sizes)), axial_only=True)
    air = (coarse < AIR_HU) & body
    air_labels, n_air = ndimage.label(air, output=LABEL_DTYPE)
    lung_air = np.zeros(coarse.shape, bool)
    if n_air:
        sizes_ml = np.bincount(air_labels.ravel()) * float(np.prod(cell_mm)) / 1000.0
        sizes_ml[0] = 0.0
        lung_air = (sizes_ml >= LUNG_MIN_ML)[air_labels]
    size = [max(1, int(round(LUNG_NEIGHBOURHOOD_MM / c))) * 2 + 1 for c in cell_mm]
    fraction = ndimage.uniform_filter(lung_air.astype(np.float32), size=size, mode="constant")
    lung = (fraction >= LUNG_AIR_FRACTION) & body
    lung_core = (fraction >= LUNG_CORE_FRACTION) & body
    bone = (coarse >= BONE_HU) & body
    cell_ml = float(np.prod(cell_mm)) / 1000.0
    pool = _blood_pool(coarse, body, cell_mm)
    values = np.asarray(coarse[pool], dtype=np.float32)
    # On an enhanced scan the lungs' arteries read above BONE_HU and join the ribs, the spine and
    # the heart into one big component: the lung is cut only by what is not blood, so an embolus
    # inside an opacified branch stays in lung. Its vessels' density is still calibrated away
    # from every big dense structure (ribs, which the branches no longer join, included). Where
    # the scan holds no opacified pool (the heart beyond it), the branches' own level stands in
    # for the blood's.
    skeleton = _big_dense(bone, cell_ml)
    lung_core &= ~skeleton
    vessel_hu = lung_vessel_level_hu(coarse[lung_core])
    if vessel_hu >= OPACIFIED_VESSEL_HU:
        blood_hu = blood_level_hu(values)
        level_hu = vessel_hu if blood_hu is None else blood_hu
        skeleton = _big_dense(_not_blood(bone, lung, coarse, pool, level_hu), cell_ml)
    lung &= ~skeleton
    if pool.any():
        pool = dilate_box(pool, [max(1, int(round(POOL_WIDEN_MM / c))) for c in cell_mm])
    return Context(
        step=step,  # type: ignore[arg-type]
        body=body,
        lung=lung,
        lung_core=lung_core,
        bone=bone,
        pool=pool,
        pool_values=values,
    )


def _big_dense(dense: np.ndarray, cell_ml: float) -> np.ndarray:
    """Components of ``dense`` of at least BIG_DENSE_ML, widened by one cell."""
    labels, count = ndimage.label(dense, output=LABEL_DTYPE)
    if not count:
        return np.zeros(dense.shape, bool)
    big = np.bincount(labels.ravel()) * cell_ml >= BIG_DENSE_ML
    big[0] = False
    return np.asarray(ndimage.binary_dilation(big[labels]), dtype=bool)


def _not_blood(
    bone: np.ndarray,
    lung: np.ndarray,
    coarse: np.ndarray,
    pool: np.ndarray,
    blood_hu: float,
) -> np.ndarray:
    """``bone`` without opacified blood: the homogeneous pools (heart, central arteries) and, in
    lung, whatever reads no denser than those pools' level ``blood_hu`` (the arteries' branches)."""
    return bone & ~pool & ~(lung & (coarse <= BRANCH_OF_POOL * blood_hu))


def _blood_pool(coarse: np.ndarray, body: np.ndarray, cell_mm: np.ndarray) -> np.ndarray:
    """Homogeneous regions at opacified-blood density (POOL_HU) of at least POOL_MIN_ML that
    no denser shell encloses (marrow: see MARROW_OVER_POOL_HU)."""
    cell_ml = float(np.prod(cell_mm)) / 1000.0
    dense = body & (coarse >= POOL_HU[0]) & (coarse < POOL_HU[1])
    out = np.zeros(coarse.shape, bool)
    where = [
        np.flatnonzero(dense.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    if any(len(w) == 0 for w in where):
        return out
    # Local mean and standard deviation over 3 cells, on the dense voxels' box (plus a cell) only.
    grown = tuple(
        slice(max(0, int(w[0]) - 1), min(n, int(w[-1]) + 2))
        for w, n in zip(where, coarse.shape, strict=True)
    )
    sub = coarse[grown].astype(np.float32)
    mean = ndimage.uniform_filter(sub, size=3)
    square = ndimage.uniform_filter(sub * sub, size=3)
    std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    smooth = dense[grown] & (std < POOL_STD_HU)
    labels, count = ndimage.label(smooth, output=LABEL_DTYPE)
    if count:
        sizes_ml = np.bincount(labels.ravel()) * cell_ml
        sizes_ml[0] = 0.0
        keep = sizes_ml >= POOL_MIN_ML
        reach = max(1, int(round(MARROW_REACH_MM / float(np.mean(cell_mm[:2])))))
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None and keep[index]:
                keep[index] = not _enclosed_marrow(labels, index, box, sub, smooth, reach)
        out[grown] = keep[labels]
    return out


def _enclosed_marrow(
    labels: np.ndarray,
    index: int,
    box: tuple[slice, ...],
    coarse: np.ndarray,
    smooth: np.ndarray,
    reach: int,
) -> bool:
    """Whether a shell denser than region ``index`` of ``labels`` encloses it in-plane
    (MARROW_*): uneven tissue, not a brighter pool (``smooth``) or its edge (the left heart
    beside the right ventricle)."""
    wide = tuple(
        slice(max(0, s.start - reach), min(n, s.stop + reach)) if axis < 2 else s
        for axis, (s, n) in enumerate(zip(box, labels.shape, strict=True))
    )
    region = labels[wide] == index
    values = coarse[wide]
    denser = values >= float(np.median(values[region])) + MARROW_OVER_POOL_HU
    brighter_pool = dilate_box(smooth[wide] & denser, [1, 1, 0])
    shell = denser & ~smooth[wide] & ~brighter_pool
    enclosed = enclosure_score(shell, reach)[region] >= MARROW_MIN_DIRECTIONS
    return bool(enclosed.mean() >= MARROW_MIN_SHARE)
