"""Contrast phase and veins filled with undiluted contrast, from HU measured in vessel masks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from cementscan.anatomy.grid import WorkGrid

# Unenhanced blood is 30-60 HU (up to ~70 with a high haematocrit; abdomen-native-3mm: aorta and
# IVC ~40); iodine adds ~25 HU per mg/ml, so a lumen above these is enhanced.
ENHANCED_ARTERY_HU = 100.0
ENHANCED_VEIN_HU = 85.0  # portal-venous IVC (abdomen-portal-dicom) ~100-180; arterial IVC < 80
# Arterial phase: the aorta is bright (CTA: 250-500 HU; chest-cta ~400) and venous return is not
# yet opacified, so the aorta exceeds the IVC by far more than in the portal-venous phase (where
# both are 100-200 HU and within ~60 HU of each other).
ARTERIAL_AORTA_HU = 200.0
ARTERIAL_GAP_HU = 120.0
# Undiluted contrast at the injection side (chest-cta SVC: median ~1300 HU, up to 3071) versus
# opacified blood (< 500 HU even in a CTA aorta). On the 2 mm grid thin columns average down, so
# a vein counts when a few percent of its voxels reach DENSE_CONTRAST_HU.
DENSE_CONTRAST_HU = 700.0
DENSE_MIN_FRACTION = 0.05
DENSE_MIN_VOXELS = 8  # 64 mm3 on the 2 mm grid: more than a calcified valve or a wire
# Veins where contrast injected into an arm vein arrives undiluted, or refluxes from the atrium.
INJECTION_VEINS = ("svc", "brachiocephalic_vein_right", "brachiocephalic_vein_left", "azygos")
IVC_REFLUX_MM = 40.0  # contrast refluxes from the right atrium into the top of the IVC
# Undiluted contrast enters the SVC from the arm veins, at its top; cement arrives from below
# (the azygos arch, or the right atrium beneath). The SVC counts only when the dense voxels
# reach its upper part (chest-cta: dense along its whole length; a cement nodule at the
# SVC-atrium junction fills only the lowest slices of a classical SVC mask).
SVC_INFLOW_MM = 40.0
EROSION_VOXELS = 1  # measure lumens away from their partial-volume rim


def _lumen_hu(grid: WorkGrid, mask: np.ndarray | None) -> float | None:
    """Median HU of a mask's core (the whole mask when eroding would empty it)."""
    if mask is None or not mask.any():
        return None
    core = ndimage.binary_erosion(
        mask, structure=np.ones((3, 3, 1), bool), iterations=EROSION_VOXELS
    )
    values = grid.hu[core] if core.sum() >= 20 else grid.hu[mask]
    return float(np.median(values))


def contrast_phase(grid: WorkGrid, masks: Mapping[str, np.ndarray]) -> str:
    """ "native", "arterial", "portal_venous" or "unknown", from the median HU of the aorta and
    the IVC (or SVC where the IVC is absent) in ``masks`` (boolean, on ``grid``).

    native: neither enhanced; arterial: aorta >= ARTERIAL_AORTA_HU and at least ARTERIAL_GAP_HU
    above the vein; portal_venous: both enhanced and closer than that; anything else (no aorta,
    an enhanced vein beside an unenhanced aorta, an early-arterial aorta) is unknown.
    """
    aorta = _lumen_hu(grid, masks.get("aorta"))
    vein = _lumen_hu(grid, masks.get("ivc"))
    if vein is None:
        vein = _lumen_hu(grid, masks.get("svc"))
    if aorta is None or vein is None:
        return "unknown"
    if aorta < ENHANCED_ARTERY_HU and vein < ENHANCED_VEIN_HU:
        return "native"
    if aorta >= ARTERIAL_AORTA_HU and aorta - vein >= ARTERIAL_GAP_HU:
        return "arterial"
    if aorta >= ENHANCED_ARTERY_HU and vein >= ENHANCED_VEIN_HU and aorta - vein < ARTERIAL_GAP_HU:
        return "portal_venous"
    return "unknown"


def _is_dense(grid: WorkGrid, mask: np.ndarray) -> bool:
    values = grid.hu[mask]
    dense = int(np.count_nonzero(values >= DENSE_CONTRAST_HU))
    return dense >= DENSE_MIN_VOXELS and dense >= DENSE_MIN_FRACTION * len(values)


def dense_contrast_veins(
    grid: WorkGrid, masks: Mapping[str, np.ndarray], phase: str | None = None
) -> tuple[str, ...]:
    """Names of veins in ``masks`` filled with undiluted contrast, to be marked not assessable.

    Only an enhanced scan can hold contrast; cement in an unenhanced scan is never called
    contrast. Even then the IVC counts only when the dense voxels lie within IVC_REFLUX_MM of its
    top (reflux from the atrium): dense material lower down in the IVC of a CT whose contrast
    came through an arm vein is cement, and must stay assessable.
    """
    if phase is None:
        phase = contrast_phase(grid, masks)
    if phase not in ("arterial", "portal_venous"):
        return ()
    found = [
        name
        for name in INJECTION_VEINS
        if name in masks
        and masks[name].any()
        and _is_dense(grid, masks[name])
        and (name != "svc" or _is_dense(grid, _top(grid, masks[name], SVC_INFLOW_MM)))
    ]
    ivc = masks.get("ivc")
    if ivc is not None and ivc.any():
        top = _top(grid, ivc, IVC_REFLUX_MM)
        dense_ivc = ivc & (grid.hu >= DENSE_CONTRAST_HU)
        if _is_dense(grid, top) and not (dense_ivc & ~top).any():
            found.append("ivc")
    return tuple(found)


def _top(grid: WorkGrid, mask: np.ndarray, height_mm: float) -> np.ndarray:
    """The part of ``mask`` within ``height_mm`` of its top slice."""
    ks = np.flatnonzero(mask.any(axis=(0, 1)))
    top = mask.copy()
    top[:, :, : max(0, int(ks[-1]) + 1 - int(round(height_mm / grid.spacing_mm)))] = False
    return top
