"""Per-scan density calibration: this scan's cortex, lung vessels, opacified blood and soft tissue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cementscan.io.volume import memory_axes

# Cement HU is UNCONFIRMED in the literature (clinical-evidence.md §4: PMMA is "extremely high
# attenuating", no measured HU found), so no absolute cement threshold is used: thresholds are set
# relative to this scan's own bone, which varies with kVp, kernel, slice thickness and patient.
BONE_HU = 300  # cancellous bone +300..+400 (clinical-evidence.md §4): candidates for "bone" voxels
# Cortex is a thin shell: bone voxels on the in-plane rim of the >= BONE_HU mask are dominated by
# cortex (cement, metal and contrast are mostly thick and their interiors are excluded). Its 95th
# percentile is a robust "dense end of ordinary cortex" even when a few mL of cement are present.
CORTEX_PERCENTILE = 95.0
# Metal is no cortex: saturated voxels (a screw, a prosthesis, wires) and their blooming are left
# out of the rim. In a small field of view around pedicle screws they would otherwise be the
# rim's top 5 % and lift the seed to its ceiling (a lumbar crop of the negative phantom: 3,071).
SATURATED_HU = 3070  # top of the standard scale (3,071) less rounding: clipped metal or cement
METAL_BLOOM_MM = 3.0
CALIBRATION_SLICES = 60  # axial slices sampled for calibration (in-plane ops only: fast)
# Seeds must be clearly denser than this scan's cortex: cortical bone reaches +500..+1900 HU
# (clinical-evidence.md §4), and at CT resolution the rim percentile sits below its peak, so the
# seed is a ratio above it; floor and ceiling keep it within the range where cement is reported
# (the quoted "1,500-3,000 HU" for cement is UNCONFIRMED, §4).
SEED_OVER_CORTEX = 1.3
SEED_MIN_HU = 1100.0
SEED_MAX_HU = 2000.0
# Grown voxels must still be above ordinary cortex so that cement does not merge with the
# vertebral shell it touches.
GROW_OVER_CORTEX = 1.05
GROW_MIN_HU = 800.0
# Lung: air below this; vessels and nodules above it (lung parenchyma ~ -850, blood 30-60 HU).
AIR_HU = -500
# Dense foci in lung must exceed this scan's own pulmonary vessels (native ~40 HU; CTPA 200-550 HU,
# clinical-evidence.md §4) by a margin; partial-volumed emboli at 3-5 mm slices are only a few
# hundred HU above their vessel, so the margin is modest and shape/context do the rest. The
# vessel level is a high percentile of the non-air voxels of deep lung outside the skeleton and
# the large opacified vessels (Context.lung): small vessels dominate it, while the odd nodule or
# embolus is too few voxels to move it.
LUNG_SOFT_HU = -300
LUNG_VESSEL_PERCENTILE = 98.0
LUNG_SEED_OVER_VESSEL_HU = 250.0
# Unenhanced blood 30-60 HU; opacified pulmonary vessels >= 200 HU in CTPA (clinical-evidence.md
# §4), portal-venous ~150: the scan's own lung vessels above this mean it carries contrast.
OPACIFIED_VESSEL_HU = 150.0
UNENHANCED_HU = 40.0  # unenhanced blood
LUNG_SEED_MIN_HU = 280.0
LUNG_GROW_FRACTION = 0.55  # grow to this fraction of the way from vessel level to the seed
# Soft tissue outside bone and lung: enhanced blood reaches ~500 HU in a CTA, calcifications
# +100..+1000; extra-osseous fragments of cement are taken from this level with context.
SOFT_SEED_MIN_HU = 600.0
# This scan's opacified blood (context.py: homogeneous pools at 150-800 HU): a high percentile of
# the pools' HU is its brightest lumen (arteries in a CTA, the pulmonary arteries in a CTPA:
# 200-550 HU, clinical-evidence.md §4); enhanced parenchyma and mixed venous blood fill the rest.
# Too few pool voxels (a native scan, a crop beside the vessels): no measured level.
BLOOD_PERCENTILE = 90.0
BLOOD_MIN_VALUES = 50


@dataclass(frozen=True)
class Calibration:
    """This scan's reference densities (HU) and the thresholds derived from them."""

    cortex_hu: float
    seed_hu: float
    grow_hu: float
    lung_vessel_hu: float
    lung_seed_hu: float
    lung_grow_hu: float
    soft_seed_hu: float
    blood_hu: float | None = None  # this scan's opacified blood; None: no opacified pool seen

    @property
    def core_hu(self) -> float:
        """The level a thick core of cement must reach (CORE_RADIUS_MM in candidates.py): where
        this scan's cortex is dense, cement can read below the seed (osteoporotic bone lets the
        cement's own surface count as cortex, and phantom or dense cortex reads 1,000-1,150 HU),
        but cortex is a shell and has no thick core at any level above ordinary cortex."""
        return min(self.seed_hu, max(self.grow_hu, SEED_MIN_HU))

    @property
    def opacified(self) -> bool:
        """Whether this scan's own lung vessels are opacified by iodine (an enhanced scan)."""
        return self.lung_vessel_hu >= OPACIFIED_VESSEL_HU


def calibrate(
    hu: np.ndarray,
    spacing_mm: tuple[float, float, float],
    lung_values: np.ndarray | None = None,
    pool_values: np.ndarray | None = None,
) -> Calibration:
    """Thresholds for ``hu`` (int16 [i, j, k], k axial, voxels of ``spacing_mm``) from a sample
    of its axial slices; ``lung_values`` are HU sampled inside the lungs (None when the scan
    shows no lung), ``pool_values`` HU of its homogeneous opacified blood pools
    (Context.pool_values)."""
    step = max(1, hu.shape[2] // CALIBRATION_SLICES)
    sample = hu[:, :, ::step]
    # In the sample's memory order (the erosion is in-plane either way; the rim's percentile
    # does not depend on the order of its voxels).
    axes = memory_axes(sample)
    sample = sample.transpose(axes)
    dense = sample >= BONE_HU
    if dense.any():
        in_plane = np.ones((3, 3, 1), bool).transpose(axes)
        inner = ndimage.binary_erosion(dense, structure=in_plane)
        rim_mask = dense & ~inner
        saturated = (sample >= SATURATED_HU).view(np.uint8)
        if saturated.any():
            # A rectangle's dilation is two 1-D ones along the sample's in-plane axes (a 2-D
            # structure costs seconds on 60 slices of 512^2).
            for axis in (0, 1):
                reach = int(np.ceil(METAL_BLOOM_MM / spacing_mm[axis]))
                saturated = ndimage.maximum_filter1d(
                    saturated, 2 * reach + 1, axis=axes.index(axis)
                )
            rim_mask &= saturated == 0
        rim = sample[rim_mask]
        cortex = float(np.percentile(rim, CORTEX_PERCENTILE)) if len(rim) else 800.0
    else:
        cortex = 800.0
    seed = float(np.clip(SEED_OVER_CORTEX * cortex, SEED_MIN_HU, SEED_MAX_HU))
    grow = float(min(max(GROW_OVER_CORTEX * cortex, GROW_MIN_HU), seed - 100.0))
    vessel = lung_vessel_level_hu(lung_values) if lung_values is not None else UNENHANCED_HU
    lung_seed = max(LUNG_SEED_MIN_HU, vessel + LUNG_SEED_OVER_VESSEL_HU)
    lung_grow = vessel + LUNG_GROW_FRACTION * (lung_seed - vessel)
    blood = blood_level_hu(pool_values) if pool_values is not None else None
    return Calibration(
        cortex_hu=cortex,
        seed_hu=seed,
        grow_hu=grow,
        lung_vessel_hu=vessel,
        lung_seed_hu=lung_seed,
        lung_grow_hu=lung_grow,
        soft_seed_hu=max(SOFT_SEED_MIN_HU, min(grow, vessel + 400.0)),
        blood_hu=blood,
    )


def blood_level_hu(pool_values: np.ndarray) -> float | None:
    """This scan's opacified blood level from its pools' HU (BLOOD_PERCENTILE), or None."""
    if len(pool_values) < BLOOD_MIN_VALUES:
        return None
    return float(np.percentile(pool_values, BLOOD_PERCENTILE))


def lung_vessel_level_hu(lung_values: np.ndarray) -> float:
    """This scan's lung-vessel level from deep-lung HU (LUNG_VESSEL_PERCENTILE of its non-air
    values); unenhanced blood where the lung shows too few vessels."""
    soft = lung_values[lung_values > LUNG_SOFT_HU]
    if len(soft) <= 100:
        return UNENHANCED_HU
    return float(np.percentile(soft, LUNG_VESSEL_PERCENTILE))
