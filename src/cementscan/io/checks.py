"""Sanity checks every loaded volume passes before analysis: HU plausibility and geometry."""

from __future__ import annotations

import numpy as np

from cementscan.errors import InputError

# Voxel sizes outside this range are not a clinical CT (or the header is broken).
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
# HU outside this range cannot come from a CT scanner's 12-16 bit reconstruction.
MIN_PLAUSIBLE_HU = -10_000
MAX_PLAUSIBLE_HU = 40_000
MIN_SLICES = 2


def check_spacing(spacing_mm: tuple[float, float, float] | list[float], path: str) -> None:
    for axis, value in zip("ijk", spacing_mm, strict=True):
        if not np.isfinite(value) or value <= 0:
            raise InputError(f"voxel spacing along {axis} is {value} mm (must be > 0)", path)
        if value < MIN_SPACING_MM or value > MAX_SPACING_MM:
            raise InputError(
                f"absurd voxel spacing along {axis}: {value:g} mm "
                f"(expected {MIN_SPACING_MM}-{MAX_SPACING_MM} mm)",
                path,
            )


def check_direction(direction: np.ndarray, path: str) -> None:
    if not np.all(np.isfinite(direction)):
        raise InputError("orientation (direction cosines) contains NaN or inf", path)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise InputError("orientation axes are not orthonormal (sheared or degenerate)", path)


def check_shape(shape: tuple[int, ...], path: str) -> None:
    if len(shape) != 3:
        raise InputError(f"expected a 3-D volume, got {len(shape)} dimensions {shape}", path)
    if min(shape) < 1:
        raise InputError(f"empty volume of shape {shape}", path)
    if min(shape) < MIN_SLICES:
        raise InputError(f"a single slice is not a CT volume (shape {shape})", path)


def to_hu_int16(values: np.ndarray, path: str) -> np.ndarray:
    """Checked HU as int16: rejects NaN/inf, non-HU data and values no CT produces."""
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise InputError(f"{bad} voxels are NaN or infinite", path)
    low = float(values.min())
    high = float(values.max())
    if low < MIN_PLAUSIBLE_HU or high > MAX_PLAUSIBLE_HU:
        raise InputError(
            f"values {low:g}..{high:g} are not Hounsfield units (expected about -1024..3071)", path
        )
    if low >= 0:
        # Every body CT has fat or air below 0 HU; all-positive values mean stored pixel values
        # without the rescale intercept (or not CT at all).
        raise InputError(
            f"values {low:g}..{high:g} never go below 0: not Hounsfield units "
            "(unsigned data without a rescale intercept, or not a CT)",
            path,
        )
    if values.dtype == np.int16:
        return values
    if values.dtype.kind == "f":
        values = np.rint(values)
    return np.clip(values, -32768, 32767).astype(np.int16)
