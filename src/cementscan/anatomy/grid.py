"""The anatomy stage's working grid: the CT resampled onto coarse LPS-aligned isotropic voxels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from cementscan.io.volume import CTVolume
from cementscan.io.write import to_sitk

WORK_SPACING_MM = 2.0
AIR_HU = -1024


@dataclass(frozen=True, eq=False)
class WorkGrid:
    """HU on an LPS-aligned grid: index axis 0 points to +x (left), 1 to +y (posterior),
    2 to +z (superior), all ``spacing_mm`` apart; ``lps = origin_lps_mm + spacing_mm * ijk``.

    Working on ~2 mm voxels keeps distance transforms and morphology fast (a full-resolution
    distance transform of 512x512x300 takes ~18 s on the project's machines, DESIGN.md §6).
    """

    hu: np.ndarray  # int16 [x, y, z]
    spacing_mm: float
    origin_lps_mm: np.ndarray  # (3,)

    @property
    def shape(self) -> tuple[int, int, int]:
        x, y, z = self.hu.shape
        return int(x), int(y), int(z)

    def to_lps(self, ijk: np.ndarray | list[float]) -> np.ndarray:
        return np.asarray(ijk, dtype=float) * self.spacing_mm + self.origin_lps_mm

    def to_index(self, lps_mm: np.ndarray | list[float]) -> np.ndarray:
        """Fractional grid indices of LPS points."""
        return (np.asarray(lps_mm, dtype=float) - self.origin_lps_mm) / self.spacing_mm

    def z_mm(self, k: int | np.ndarray) -> np.ndarray | float:
        return self.origin_lps_mm[2] + np.asarray(k) * self.spacing_mm

    def reference_image(self) -> sitk.Image:
        image = sitk.Image([int(s) for s in self.shape], sitk.sitkUInt8)
        image.SetSpacing([self.spacing_mm] * 3)
        image.SetOrigin([float(v) for v in self.origin_lps_mm])
        return image


def make_work_grid(volume: CTVolume, spacing_mm: float = WORK_SPACING_MM) -> WorkGrid:
    """Resample ``volume`` (any orientation) onto an LPS-aligned grid covering its whole extent."""
    corners_ijk = np.array(
        [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float
    ) * (np.asarray(volume.shape) - 1)
    corners = volume.index_to_lps(corners_ijk)
    low, high = corners.min(axis=0), corners.max(axis=0)
    # Round up so the grid reaches the CT's last slice; the fraction of a voxel beyond it is
    # filled from the nearest CT voxel, not with air.
    size = np.maximum(np.ceil((high - low) / spacing_mm - 1e-6).astype(int) + 1, 1)
    reference = sitk.Image([int(s) for s in size], sitk.sitkInt16)
    reference.SetSpacing([spacing_mm] * 3)
    reference.SetOrigin([float(v) for v in low])
    # The reconstruction circle's padding (-2048 and below) would drag interpolated edges down.
    hu = volume.hu
    if int(hu.min()) < AIR_HU:  # a new whole-volume array only where there is padding to clip
        hu = np.maximum(hu, AIR_HU)
    hu = hu.astype(np.int16, copy=False)
    image = to_sitk(hu, volume)
    # Block-average first so that small dense objects are averaged, not aliased (and it is
    # ~40x faster than a Gaussian on a 512x512 series).
    factors = [max(1, int(spacing_mm / s)) for s in volume.spacing_mm]
    if max(factors) > 1:
        image = sitk.BinShrink(image, factors)
    resampled = sitk.Resample(
        image,
        reference,
        sitk.Transform(),
        sitk.sitkLinear,
        float(AIR_HU),
        sitk.sitkInt16,
        True,  # useNearestNeighborExtrapolator
    )
    # C-contiguous [x, y, z]: masks made from it by numpy and scipy then share its memory order
    # (an elementwise operation mixing C- and Fortran-ordered volumes is ~50x slower).
    array = np.ascontiguousarray(sitk.GetArrayFromImage(resampled).transpose(2, 1, 0))
    return WorkGrid(hu=array, spacing_mm=spacing_mm, origin_lps_mm=low.astype(float))


def labels_to_volume(labels_xyz: np.ndarray, grid: WorkGrid, volume: CTVolume) -> np.ndarray:
    """Nearest-neighbour resampling of a work-grid label map onto the CT's own [i, j, k] grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels_xyz.transpose(2, 1, 0)))
    image.SetSpacing([grid.spacing_mm] * 3)
    image.SetOrigin([float(v) for v in grid.origin_lps_mm])
    reference = to_sitk(np.zeros(volume.shape, np.uint8), volume)
    resampled = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID()
    )
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)
