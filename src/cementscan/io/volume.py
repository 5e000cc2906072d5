"""The loaded CT: HU voxels, their exact index <-> LPS-mm geometry and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SourceInfo:
    """Where a volume came from and what its header said (fields are None when absent)."""

    path: str
    format: str  # "dicom" | "nifti" | "nrrd" | "metaimage"
    modality: str = "CT"
    series_uid: str | None = None
    series_uid_generated: bool = False  # blank UID in the source: a stable one was made up
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    patient_sex: str | None = None
    patient_birth_date: str | None = None
    study_date: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    manufacturer: str | None = None
    kvp: float | None = None
    contrast_agent: str | None = None  # DICOM ContrastBolusAgent as written
    slice_thickness_mm: float | None = None
    convolution_kernel: str | None = None
    files: tuple[str, ...] = ()  # DICOM files in slice order (k); empty for single-file formats


@dataclass(frozen=True, eq=False)
class CTVolume:
    """A CT series as HU on a regular grid.

    ``hu`` is indexed ``[i, j, k]`` in the voxel-index order of DESIGN.md §3 (SimpleITK's
    GetSize order). Column ``c`` of ``direction`` is the LPS unit vector of index axis ``c``,
    so ``lps_mm = origin_lps_mm + direction @ (spacing_mm * ijk)``.

    >>> vol = CTVolume(np.zeros((2, 2, 2), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3),
    ...                SourceInfo(path="x.nii.gz", format="nifti"))
    >>> vol.index_to_lps([1, 1, 1]).tolist()
    [1.0, 1.0, 2.0]
    """

    hu: np.ndarray  # int16, shape (i, j, k)
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction: np.ndarray  # 3x3, LPS, orthonormal columns
    source: SourceInfo
    warnings: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int, int]:
        i, j, k = self.hu.shape
        return int(i), int(j), int(k)

    @property
    def affine_lps(self) -> np.ndarray:
        """4x4 matrix taking homogeneous voxel indices (i, j, k, 1) to LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction * np.asarray(self.spacing_mm)[None, :]
        affine[:3, 3] = self.origin_lps_mm
        return affine

    def index_to_lps(self, ijk: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
        """LPS mm of voxel indices; ``ijk`` is (3,) or (n, 3), fractional indices allowed."""
        ijk_arr = np.asarray(ijk, dtype=float)
        affine = self.affine_lps
        return ijk_arr @ affine[:3, :3].T + affine[:3, 3]

    def lps_to_index(self, lps_mm: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
        """Fractional voxel indices of LPS-mm points; ``lps_mm`` is (3,) or (n, 3)."""
        lps_arr = np.asarray(lps_mm, dtype=float)
        affine = self.affine_lps
        return (lps_arr - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    def orientation_code(self) -> str:
        """Three letters, each the LPS direction its index axis points toward (e.g. "LPS", "RAS")."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        for axis in range(3):
            dominant = self.lps_axis_of(axis)
            code += letters[dominant][0 if self.direction[dominant, axis] > 0 else 1]
        return code

    def lps_axis_of(self, index_axis: int) -> int:
        """The LPS axis (0 = L, 1 = P, 2 = S) that index axis ``index_axis`` runs most nearly along."""
        return int(np.argmax(np.abs(np.asarray(self.direction)[:, index_axis])))

    def index_axis_along(self, lps_axis: int) -> int:
        """The index axis whose direction is most nearly along LPS axis ``lps_axis`` (2: the axial
        stacking axis, whatever the storage order)."""
        return int(np.argmax(np.abs(np.asarray(self.direction)[lps_axis, :])))


@dataclass(frozen=True)
class SkippedSeries:
    """A series found in the input that was not analysed, and why."""

    series_uid: str
    reason: str
    path: str = ""


@dataclass(frozen=True)
class Study:
    """One patient's study: the CT series chosen for analysis and those skipped."""

    volumes: tuple[CTVolume, ...]
    skipped: tuple[SkippedSeries, ...] = ()


def memory_axes(array: np.ndarray) -> tuple[int, ...]:
    """The axis order in which ``array`` is laid out in memory (largest stride first).

    ``array.transpose(memory_axes(array))`` is C-ordered for a C- or Fortran-ordered array: a
    loaded CT's ``hu`` is a Fortran-ordered [i, j, k] view of SimpleITK's [k, j, i] buffer, and
    mixing memory orders in one elementwise operation is ~50x slower than matching them.
    """
    return tuple(int(a) for a in np.argsort([-s for s in array.strides], kind="stable"))
