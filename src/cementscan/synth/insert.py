"""Simulated PMMA cement inserted into a real CT from its reference labels, with its truth.

Positions come only from the reference label maps shipped with the data (TotalSegmentator,
VerSe/TPTBox) or from LPS coordinates in the spec, never from ``cementscan.anatomy``, so truth
and detector do not share their errors (DESIGN.md §7). Every geometric step happens in
physical LPS space: the CT's voxel grid (any axis-permuted orientation: RAS, LAS, LPS, PIR,
DICOM) is viewed as an LPS-aligned grid, and label files are resampled onto it by their own
geometry (the j2k DICOM labels are stored y-flipped and still land right).

Cement shapes are the phantom's signed-distance shapes (``synth.shapes``), rendered with the
phantom's partial-volume coverage (``synth.render.coverage``: each voxel box, the slab in z,
is supersampled near surfaces). The image model, per voxel with blurred coverage ``F``::

    hu = (1 - F) * hu_scan + F * hu_cement + noise * sqrt(1 - (1 - F)^2)

``F`` is the coverage blurred by a Gaussian point-spread (in-plane FWHM max(0.9 mm, pixel);
through-plane sigma a fifth of the slice spacing, on top of the slab average), and the noise
is Gaussian, correlated by the same kernel, with the sigma measured in the scan's own muscle
or soft tissue: where cement replaces tissue, the tissue's noise is scaled by ``1 - F`` and
the added noise restores the scan's noise level. Voxels with ``F`` below 1e-3 are untouched.

The spec format is documented in ``synth.insert_spec``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from cementscan.atomic import output_folder
from cementscan.errors import InputError
from cementscan.io import CTVolume, load_volume, write_labels, write_volume
from cementscan.synth.cement import (
    DEFAULT_LEAK_VOLUME_ML,
    YEOM,
    blob,
    fit_volume,
    leave_body,
    length_outside_mm,
    trim_path,
    tube_gap_mm,
)
from cementscan.synth.insert_spec import LEVELS, InsertSpec, ObjectSpec
from cementscan.synth.render import Grid, coverage, owned_voxels
from cementscan.synth.shapes import (
    BBox,
    Ellipsoid,
    EllipticSlab,
    Intersect,
    Shape,
    Subtract,
    Tube,
    Union,
)
from cementscan.synth.spec import CEMENT_HU_RANGE
from cementscan.synth.truth import TRUTH_SCHEMA, TruthObject, side_of, summarize

# --- label vocabularies of the shared data ---------------------------------------------------
# VerSe vertebra ids (lumbar-crop's vertebrae.nii.gz: 21 L2, 22 L3, 23 L4; 28 is T13).
VERSE_NAMES: dict[int, str] = {
    **{n: f"vertebrae_C{n}" for n in range(1, 8)},
    **{n + 7: f"vertebrae_T{n}" for n in range(1, 13)},
    **{n + 19: f"vertebrae_L{n}" for n in range(1, 7)},
    26: "sacrum",
    28: "vertebrae_T13",
}
# TPTBox subregion ids (lumbar-crop's subregions.nii.gz). Checked on the data: 50 is enclosed
# by 49 and both lie anterior to the arch (41): 49 is the body's cortical border, 50 its core.
TPTBOX_SUBREGIONS: dict[int, str] = {
    41: "arcus_vertebrae", 42: "spinosus_process", 43: "costal_process_left",
    44: "costal_process_right", 45: "superior_articular_left", 46: "superior_articular_right",
    47: "inferior_articular_left", 48: "inferior_articular_right",
    49: "vertebra_corpus_border", 50: "vertebra_corpus",
}  # fmt: skip
BUILTIN_NAMES = {"vertebrae": VERSE_NAMES, "subregions": TPTBOX_SUBREGIONS}
DEFAULT_LABEL_FILES = ("labels", "vertebrae", "subregions", "pulmonary_artery")
BODY_SUBREGIONS = ("vertebra_corpus", "vertebra_corpus_border")
RIGHT_LOBES = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
LEFT_LOBES = ("lung_upper_lobe_left", "lung_lower_lobe_left")
MUSCLE_LABELS = (
    "autochthon_right", "autochthon_left", "iliopsoas_right", "iliopsoas_left",
    "gluteus_maximus_right", "gluteus_maximus_left", "liver", "spleen",
)  # fmt: skip

# --- image model -------------------------------------------------------------------------------
# In-plane point spread: the ACR CT accreditation phantom asks a soft-tissue kernel to resolve
# 6 lp/cm (0.83 mm bars), so a ~0.9 mm FWHM; a coarse grid cannot be sharper than its pixel.
PSF_FWHM_MIN_MM = 0.9
FWHM_PER_SIGMA = 2.3548
# Through-plane: coverage is already averaged over the slab (a rectangular slice profile); a
# real reconstruction's profile has soft edges, modelled by this extra Gaussian (x spacing).
SLICE_EDGE_SIGMA_PER_SPACING = 0.2
COVERAGE_EPS = 1e-3  # below this blurred coverage (2 HU of 2000 HU cement) a voxel is untouched
NOISE_WINDOW_VOXELS = 5  # in-plane window of the local standard deviation
NOISE_FALLBACK_HU = 15.0
NOISE_MIN_VOXELS = 500
# Intravertebral cement stays this far inside the labelled body: the cortex is ~1-2 mm and a
# voxel labelled from 30% coverage reaches about half a voxel beyond the shape.
BODY_MARGIN_MIN_MM = 2.0
# Lung vessels: lung parenchyma is about -850 HU and vessels are soft tissue or contrast;
# -300 HU keeps >=1 mm vessels at 0.7-3 mm voxels while staying clear of parenchyma noise.
VESSEL_MIN_HU = -300.0
LUNG_EDGE_MARGIN_MM = 3.0  # vessels this close to the pleura/diaphragm are not used
# Segmental/subsegmental arteries are ~2-8 mm across; wider ones are lobar or central.
PERIPHERAL_MAX_VESSEL_RADIUS_MM = 4.0
EMBOLUS_TRIES = 4000
HEART_MARGIN_MM = 4.0  # right-heart cement stays this far inside the heart label
IVC_WALL_MARGIN_MM = 1.0
CANAL_MIN_AREA_MM2 = 60.0  # lumbar/thoracic canals are ~150-300 mm^2; label gaps are smaller
# The canal's centre lies behind the whole vertebra's centroid (the posterior elements pull
# that centroid back to about the body's rear wall); a small margin for short processes.
CANAL_BEHIND_MARGIN_MM = 5.0
MIDLINE_VEIN_RADIUS_MM = 2.0  # segmental vein tract (the phantom's SEGMENTAL_VEIN_RADIUS_MM)


# =============================================================================================
# Geometry: the CT grid as an LPS-aligned grid, regions and mask shapes
# =============================================================================================
@dataclass(frozen=True)
class LpsFrame:
    """A view of a CT's storage-order arrays as LPS-ordered arrays (transpose + flips)."""

    axes: tuple[int, int, int]  # storage axis that runs along L, P, S
    flips: tuple[bool, bool, bool]  # whether that storage axis runs toward R, A, I
    grid: Grid

    @classmethod
    def of(cls, vol: CTVolume) -> LpsFrame:
        d = np.asarray(vol.direction, dtype=float)
        axes, flips = [], []
        for a in range(3):
            c = vol.index_axis_along(a)
            if abs(abs(d[a, c]) - 1.0) > 1e-3:
                raise InputError(
                    "oblique direction cosines are not supported by insert (axis-aligned only)",
                    path=vol.source.path,
                )
            axes.append(c)
            flips.append(bool(d[a, c] < 0))
        if sorted(axes) != [0, 1, 2]:
            raise InputError("degenerate direction cosines", path=vol.source.path)
        corner = [0, 0, 0]
        for a in range(3):
            if flips[a]:
                corner[axes[a]] = vol.shape[axes[a]] - 1
        origin = vol.index_to_lps([float(c) for c in corner])
        grid = Grid(
            tuple(float(origin[a]) for a in range(3)),  # type: ignore[arg-type]
            tuple(float(vol.spacing_mm[axes[a]]) for a in range(3)),  # type: ignore[arg-type]
            tuple(int(vol.shape[axes[a]]) for a in range(3)),  # type: ignore[arg-type]
        )
        return cls(tuple(axes), tuple(flips), grid)  # type: ignore[arg-type]

    def view(self, arr: np.ndarray) -> np.ndarray:
        """The LPS-ordered view of a storage-order array (writes go through)."""
        out = np.transpose(arr, self.axes)
        for a in range(3):
            if self.flips[a]:
                out = np.flip(out, axis=a)
        return out


def _mm(grid: Grid, idx: np.ndarray) -> np.ndarray:
    return np.asarray(grid.origin_lps_mm) + np.asarray(idx, dtype=float) * np.asarray(
        grid.spacing_mm
    )


def _idx(grid: Grid, pts_mm: np.ndarray) -> np.ndarray:
    """Nearest voxel indices (n, 3) of LPS points, clipped to the grid."""
    f = (np.asarray(pts_mm, dtype=float) - np.asarray(grid.origin_lps_mm)) / np.asarray(
        grid.spacing_mm
    )
    return np.clip(np.rint(f).astype(int), 0, np.asarray(grid.shape) - 1)


def _inside_grid(grid: Grid, pts_mm: np.ndarray) -> np.ndarray:
    f = (np.asarray(pts_mm, dtype=float) - np.asarray(grid.origin_lps_mm)) / np.asarray(
        grid.spacing_mm
    )
    return np.all((f > -0.5) & (f < np.asarray(grid.shape) - 0.5), axis=-1)


@dataclass
class Region:
    """A boolean mask on a crop of an LPS grid: ``mask`` covers the grid indices ``sl``."""

    sl: tuple[slice, slice, slice]
    mask: np.ndarray
    grid: Grid

    @classmethod
    def from_full(cls, full: np.ndarray, grid: Grid) -> Region | None:
        nz = [np.flatnonzero(full.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
        if any(len(n) == 0 for n in nz):
            return None
        sl = tuple(slice(int(n[0]), int(n[-1]) + 1) for n in nz)
        return cls(sl, np.ascontiguousarray(full[sl]), grid)  # type: ignore[arg-type]

    @property
    def start(self) -> np.ndarray:
        return np.array([s.start for s in self.sl])

    @property
    def voxels(self) -> int:
        return int(self.mask.sum())

    def points_mm(self) -> np.ndarray:
        return _mm(self.grid, np.argwhere(self.mask) + self.start)

    def centroid_mm(self) -> np.ndarray:
        return self.points_mm().mean(axis=0)

    def contains(self, pts_mm: np.ndarray) -> np.ndarray:
        f = (np.asarray(pts_mm, dtype=float) - np.asarray(self.grid.origin_lps_mm)) / np.asarray(
            self.grid.spacing_mm
        )
        ijk = np.rint(f).astype(int) - self.start
        ok = np.all((ijk >= 0) & (ijk < np.asarray(self.mask.shape)), axis=-1)
        out = np.zeros(len(ijk), dtype=bool)
        out[ok] = self.mask[tuple(ijk[ok].T)]
        return out

    def where(self, keep: np.ndarray) -> Region | None:
        """This region restricted to ``keep`` (same crop shape)."""
        sub = Region.from_full(self.mask & keep, self.grid)
        if sub is None:
            return None
        sub.sl = tuple(  # type: ignore[assignment]
            slice(s.start + t.start, s.start + t.stop) for s, t in zip(self.sl, sub.sl, strict=True)
        )
        return sub


class MaskShape(Shape):
    """A labelled region as a signed-distance shape (EDT on the crop, trilinear lookup).

    ``margin_mm`` > 0 shrinks the shape (a wall the cement keeps off), < 0 grows it. The
    voxel-centre EDT is shifted by half the finest spacing so the zero level lies on the voxel
    boundary, and scaled by 0.9 so the value stays a distance bound on anisotropic grids.
    """

    def __init__(self, region: Region, margin_mm: float = 0.0, pad_mm: float = 6.0) -> None:
        sp = np.asarray(region.grid.spacing_mm, dtype=float)
        pad = np.ceil((pad_mm + max(0.0, -margin_mm)) / sp).astype(int) + 1
        m = np.pad(region.mask, [(int(p), int(p)) for p in pad])
        inside = ndimage.distance_transform_edt(m, sampling=sp)
        outside = ndimage.distance_transform_edt(~m, sampling=sp)
        half = 0.5 * float(sp.min())
        phi = np.where(m, -(inside - half), outside - half) * 0.9 + margin_mm
        self.phi = phi.astype(np.float32)
        self.origin = np.asarray(region.grid.origin_lps_mm) + (region.start - pad) * sp
        self.spacing = sp
        pts = region.points_mm()
        grow = max(0.0, -margin_mm)
        self._lo = pts.min(axis=0) - sp / 2 - grow
        self._hi = pts.max(axis=0) + sp / 2 + grow

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        bx, by, bz = np.broadcast_arrays(x, y, z)
        coords = np.stack(
            [
                (np.asarray(b, dtype=np.float64).ravel() - self.origin[a]) / self.spacing[a]
                for a, b in enumerate((bx, by, bz))
            ]
        )
        out = ndimage.map_coordinates(self.phi, coords, order=1, mode="nearest")
        return out.reshape(bx.shape).astype(np.float32)

    def bbox(self) -> BBox:
        return self._lo.copy(), self._hi.copy()


# =============================================================================================
# Reference labels
# =============================================================================================
def _read_names(
    json_path: Path | None, stem: str, ids: np.ndarray, label_path: Path
) -> dict[int, str]:
    if json_path is not None:
        try:
            raw = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read label names ({type(exc).__name__})", json_path) from None
        if not isinstance(raw, dict):
            raise InputError("label names must be a JSON object {id: name}", json_path)
        try:
            return {int(k): str(v) for k, v in raw.items()}
        except ValueError:
            raise InputError("label name keys must be integer ids", json_path) from None
    if stem in BUILTIN_NAMES:
        return dict(BUILTIN_NAMES[stem])
    present = [int(i) for i in ids if i != 0]
    if present == [1]:  # a binary mask: the file names the structure (pulmonary_artery.nii.gz)
        return {1: stem}
    raise InputError("no label names: give --labels-json (a JSON object {id: name})", label_path)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def default_label_files(input_path: Path) -> list[tuple[Path, Path | None]]:
    """Reference label files beside the input (its folder, or a DICOM folder's parent)."""
    folders = [input_path.parent] if input_path.is_file() else [input_path, input_path.parent]
    found: list[tuple[Path, Path | None]] = []
    for folder in folders:
        for stem in DEFAULT_LABEL_FILES:
            p = folder / f"{stem}.nii.gz"
            if p.is_file():
                j = folder / f"{stem}.json"
                found.append((p, j if j.is_file() else None))
        if found:
            break
    return found


def _load_label_array(path: Path, vol: CTVolume) -> np.ndarray:
    """The label file on the CT's storage grid (nearest neighbour, in physical space)."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError("cannot read the label file", path) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("label file is not a 3-D scalar image", path)
    same = (
        tuple(image.GetSize()) == vol.shape
        and np.allclose(image.GetSpacing(), vol.spacing_mm, atol=1e-4)
        and np.allclose(image.GetOrigin(), vol.origin_lps_mm, atol=1e-3)
        and np.allclose(np.reshape(image.GetDirection(), (3, 3)), vol.direction, atol=1e-5)
    )
    if not same:
        ref = sitk.Image([int(s) for s in vol.shape], sitk.sitkUInt8)
        ref.SetSpacing([float(s) for s in vol.spacing_mm])
        ref.SetOrigin([float(o) for o in vol.origin_lps_mm])
        ref.SetDirection([float(d) for d in vol.direction.ravel()])
        image = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    arr = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise InputError("label file holds non-integer values", path)
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)


class Reference:
    """The reference labels on the CT's LPS view, with the anatomy insert needs from them."""

    def __init__(self, vol: CTVolume, hu_lps: np.ndarray, frame: LpsFrame,
                 files: list[tuple[Path, Path | None]]) -> None:  # fmt: skip
        self.grid = frame.grid
        self.hu = hu_lps
        self.files = [str(p) for p, _ in files]
        self.arrays: list[np.ndarray] = []
        self.ids: dict[str, tuple[int, int]] = {}
        for path, names_path in files:
            arr = _load_label_array(path, vol)
            ids = np.unique(arr)
            names = _read_names(names_path, _stem(path), ids, path)
            view = frame.view(arr)
            n = len(self.arrays)
            self.arrays.append(view)
            present = {int(i) for i in ids if i != 0}
            if not present:
                raise InputError("label map is empty on the CT's grid (no overlap in space)", path)
            for i in sorted(present):
                name = names.get(i)
                if name is not None and name not in self.ids:
                    self.ids[name] = (n, i)
        self._cache: dict[str, Region | None] = {}
        self._bodies: dict[str, Region] = {}
        self._midline: np.ndarray | None = None

    # -- masks --------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self.ids

    def full(self, *names: str) -> np.ndarray:
        out = np.zeros(self.grid.shape, dtype=bool)
        for name in names:
            if name in self.ids:
                n, i = self.ids[name]
                out |= self.arrays[n] == i
        return out

    def region(self, *names: str) -> Region | None:
        key = "|".join(names)
        if key not in self._cache:
            self._cache[key] = Region.from_full(self.full(*names), self.grid)
        return self._cache[key]

    def need(self, where: str, *names: str) -> Region:
        r = self.region(*names)
        if r is None:
            raise InputError(f"{where}: the reference labels have no {' or '.join(names)}")
        return r

    def vertebra(self, level: str, where: str) -> Region:
        return self.need(where, f"vertebrae_{level}")

    def levels(self) -> list[str]:
        return [lv for lv in LEVELS if self.has(f"vertebrae_{lv}")]

    # -- spine ----------------------------------------------------------------------------------
    def body(self, level: str, where: str) -> Region:
        """The vertebral body: the vertebra label anterior to the canal (or TPTBox's corpus)."""
        if level in self._bodies:
            return self._bodies[level]
        vert = self.vertebra(level, where)
        if any(self.has(n) for n in BODY_SUBREGIONS):
            corpus = self.full(*BODY_SUBREGIONS)[vert.sl]
            body = vert.where(corpus)
        else:
            front = self._canal_front_y(vert)
            if front is None:
                raise InputError(f"{where}: cannot find the body of {level}: no spinal_cord label "
                                 "and the vertebra's ring is not closed")  # fmt: skip
            y_mm = self.grid.origin_lps_mm[1] + (
                np.arange(vert.sl[1].start, vert.sl[1].stop) * self.grid.spacing_mm[1]
            )
            # 1 mm in front of the canal: the body's posterior cortex, not the pedicles' roots.
            keep = y_mm[None, :, None] < (front[None, None, :] - 1.0)
            body = vert.where(np.broadcast_to(keep, vert.mask.shape))
        if body is None or body.voxels * np.prod(self.grid.spacing_mm) < 2000.0:
            raise InputError(f"{where}: the labelled body of {level} is missing or under 2 mL")
        self._bodies[level] = body
        return body

    def _canal_front_y(self, vert: Region) -> np.ndarray | None:
        """Per slice of ``vert``'s crop, the y (mm) of the canal's anterior edge."""
        nk = vert.mask.shape[2]
        front = np.full(nk, np.nan)
        cord = self.full("spinal_cord")[vert.sl] if self.has("spinal_cord") else None
        y_mm = self.grid.origin_lps_mm[1] + (
            np.arange(vert.sl[1].start, vert.sl[1].stop) * self.grid.spacing_mm[1]
        )
        y_back = float(vert.centroid_mm()[1]) - CANAL_BEHIND_MARGIN_MM
        for k in range(nk):
            hole = None
            if cord is not None and cord[:, :, k].any():
                hole = cord[:, :, k]
            else:
                hole = _ring_hole(vert.mask[:, :, k], self.grid, y_mm, y_back)
            if hole is not None:
                front[k] = y_mm[np.flatnonzero(hole.any(axis=0))[0]]
        if np.all(np.isnan(front)):
            return None
        good = ~np.isnan(front)
        return np.interp(np.arange(nk), np.flatnonzero(good), front[good])

    def canal(self, level: str, where: str) -> Region:
        """The spinal canal beside ``level``: the cord label or the vertebra ring's hole."""
        vert = self.vertebra(level, where)
        if self.has("spinal_cord"):
            cord = self.full("spinal_cord")[vert.sl]
            r = Region(vert.sl, cord, self.grid).where(np.ones_like(cord))
            if r is not None:
                return r
        holes = np.zeros_like(vert.mask)
        y_mm = self.grid.origin_lps_mm[1] + (
            np.arange(vert.sl[1].start, vert.sl[1].stop) * self.grid.spacing_mm[1]
        )
        y_back = float(vert.centroid_mm()[1]) - CANAL_BEHIND_MARGIN_MM
        for k in range(vert.mask.shape[2]):
            hole = _ring_hole(vert.mask[:, :, k], self.grid, y_mm, y_back)
            if hole is not None:
                holes[:, :, k] = hole
        # The ring is closed only at the pedicles: extrude its hole over the vertebra's height.
        foot = np.asarray(holes.any(axis=2))
        if foot.sum() < 4:
            raise InputError(f"{where}: no canal at {level}: no spinal_cord label and the ring "
                             "is not closed")  # fmt: skip
        zs = np.asarray(vert.mask.any(axis=(0, 1)))
        col = np.broadcast_to(foot[:, :, None] & zs[None, None, :], vert.mask.shape)
        r = Region(vert.sl, np.ascontiguousarray(col), self.grid).where(np.ones_like(col))
        assert r is not None
        return r

    def midline_x(self, z_mm: float) -> float | None:
        """x (mm) of the canal/cord centre at height ``z_mm`` (vertebrae when no cord)."""
        if self._midline is None:
            nz = self.grid.shape[2]
            xs = np.full(nz, np.nan)
            for names in (("spinal_cord",), tuple(f"vertebrae_{lv}" for lv in LEVELS)):
                r = self.region(*names)
                if r is None:
                    continue
                pts = np.argwhere(r.mask) + r.start
                for k in np.unique(pts[:, 2]):
                    sel = pts[:, 2] == k
                    if np.isnan(xs[k]):
                        xs[k] = _mm(self.grid, pts[sel]).mean(axis=0)[0]
            self._midline = xs
        xs = self._midline
        good = ~np.isnan(xs)
        if not good.any():
            return None
        zs = self.grid.axis_mm(2)
        return float(np.interp(z_mm, zs[good], xs[good]))

    def side_at(self, p: np.ndarray) -> str:
        mid = self.midline_x(float(p[2]))
        return side_of(float(p[0]), 0.0 if mid is None else mid)

    def level_spans(self) -> dict[str, tuple[float, float]]:
        """Each labelled level's z span down to the next body (for naming extents)."""
        tops: dict[str, tuple[float, float]] = {}
        for lv in self.levels():
            r = self.region(f"vertebrae_{lv}")
            assert r is not None
            ks = np.flatnonzero(r.mask.any(axis=(0, 1))) + r.sl[2].start
            zs = self.grid.origin_lps_mm[2] + ks * self.grid.spacing_mm[2]
            tops[lv] = (float(zs.min()), float(zs.max()))
        names = list(tops)
        spans = {}
        for a, b in itertools.pairwise(names):
            spans[a] = (tops[b][1], tops[a][1])
        if names:
            spans[names[-1]] = tops[names[-1]]
        return spans

    def nearest_level(self, z_mm: float) -> str | None:
        spans = self.level_spans()
        if not spans:
            return None
        best, best_d = None, float("inf")
        for name, (lo, hi) in spans.items():
            d = max(lo - z_mm, z_mm - hi, 0.0)
            if d < best_d:
                best, best_d = name, d
        return best if best_d <= 30.0 else None

    # -- lungs ------------------------------------------------------------------------------------
    def lung_side(self, p: np.ndarray) -> tuple[str | None, str | None]:
        """(side, lobe) of the lung lobe holding point ``p``; (None, None) outside the lobes."""
        ijk = tuple(_idx(self.grid, p[None, :])[0])
        for lobe in (*RIGHT_LOBES, *LEFT_LOBES):
            if lobe in self.ids:
                n, i = self.ids[lobe]
                if self.arrays[n][ijk] == i:
                    return ("right" if lobe.endswith("right") else "left"), lobe
        return None, None

    def lung_z(self, side: str) -> tuple[float, float] | None:
        r = self.region(*(RIGHT_LOBES if side == "right" else LEFT_LOBES))
        if r is None:
            return None
        z = self.grid.origin_lps_mm[2] + self.grid.spacing_mm[2] * np.array(
            [r.sl[2].start, r.sl[2].stop - 1]
        )
        return float(z[0]), float(z[1])

    def lung_zone(self, side: str, z_mm: float) -> str | None:
        """Thirds of the lung's craniocaudal extent (the phantom's rule); None if cut by the FOV."""
        span = self.lung_z(side)
        r = self.region(*(RIGHT_LOBES if side == "right" else LEFT_LOBES))
        if span is None or r is None or r.sl[2].start == 0 or r.sl[2].stop == self.grid.shape[2]:
            return None
        lo, hi = span
        t = (z_mm - lo) / max(hi - lo, 1e-6)
        return "lower" if t < 1 / 3 else "middle" if t < 2 / 3 else "upper"

    def coverage_names(self) -> set[str]:
        out: set[str] = set()
        lungs = [self.region(*RIGHT_LOBES), self.region(*LEFT_LOBES)]
        if all(r is not None and r.sl[2].stop < self.grid.shape[2] for r in lungs):
            out.add("chest")
        if self.has("pulmonary_artery") or self.has("heart"):
            out.add("chest")
        if any(self.has(n) for n in ("inferior_vena_cava", "liver", "kidney_right")):
            out.add("abdomen")
        if any(self.has(f"vertebrae_L{n}") for n in range(1, 6)):
            out.add("lumbar_spine")
        return out


# =============================================================================================
# Building the cement objects
# =============================================================================================
def _extent(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust centre and semi-axes (mm) of a point cloud along x, y, z."""
    lo, hi = np.percentile(pts, 3, axis=0), np.percentile(pts, 97, axis=0)
    return 0.5 * (lo + hi), 0.5 * (hi - lo)


class Builder:
    """Turns spec objects into TruthObjects placed from the reference labels."""

    def __init__(self, ref: Reference, spec: InsertSpec, rng: np.random.Generator) -> None:
        self.ref, self.spec, self.rng = ref, spec, rng
        self.objects: list[TruthObject] = []
        self.by_level: dict[str, TruthObject] = {}
        self.ivc_inflows: list[tuple[TruthObject, Shape]] = []
        self.clip: dict[int, Region] = {}  # object id -> label it must stay inside (tests)
        self.warnings: list[str] = []
        sp = np.asarray(ref.grid.spacing_mm)
        self.slice_mm = float(sp[2])

    def _hu(self, value: float | None) -> float:
        return float(value) if value is not None else float(self.rng.uniform(*CEMENT_HU_RANGE))

    def _new(self, **kwargs: Any) -> TruthObject:
        obj = TruthObject(id=len(self.objects) + 1, **kwargs)
        try:
            obj.measure()
        except ValueError:
            raise InputError(
                f"{obj.category} object {obj.id} has no volume where the labels put it"
            ) from None
        if not obj.side:
            obj.side = self.ref.side_at(np.asarray(obj.centroid_lps_mm))
        if obj.level is None and obj.category not in ("pulmonary_artery", "right_heart"):
            obj.level = self.ref.nearest_level(obj.centroid_lps_mm[2])
        obj.series_indices = [0]
        self.objects.append(obj)
        return obj

    def build(self) -> list[TruthObject]:
        order = {"intravertebral": 0, "leak": 1, "ivc_cast": 2, "right_heart": 3, "emboli": 4,
                 "at": 5}  # fmt: skip
        for o in sorted(self.spec.objects, key=lambda o: (order[o.type], o.index)):
            getattr(self, o.type)(o)
        return self.objects

    # -- intravertebral -----------------------------------------------------------------------
    def intravertebral(self, o: ObjectSpec) -> None:
        assert o.level is not None and o.volume_ml is not None
        body = self.ref.body(o.level, o.where_text)
        centre, semi = _extent(body.points_mm())
        margin = max(BODY_MARGIN_MIN_MM, 0.5 * max(self.ref.grid.spacing_mm) + 0.5)
        interior = MaskShape(body, margin_mm=margin)
        sx = {"right": -1.0, "left": 1.0, "bipedicular": 0.0}[o.fill]
        c = centre + np.array([sx * 0.35 * semi[0], -0.1 * semi[1], 0.0])
        radii = semi * np.array([0.45 if sx else 0.7, 0.6, 0.8])
        make = blob(c, radii, self.rng, 6)
        shape = fit_volume(lambda s: Intersect((make(s), interior)), o.volume_ml)
        obj = self._new(category="intravertebral", shape_kind="amorphous", shape=shape,
                        hu=self._hu(o.hu), side="", level=o.level)  # fmt: skip
        obj.extra["fill_side"] = o.fill
        if abs(obj.volume_ml - o.volume_ml) > 0.15 * o.volume_ml:
            self.warnings.append(f"{o.level}: intravertebral cement {obj.volume_ml:.2f} mL "
                                 f"(asked {o.volume_ml:.2f} mL; the labelled body is too small)")  # fmt: skip
        self.by_level[o.level] = obj
        self.clip[obj.id] = body

    # -- leaks ----------------------------------------------------------------------------------
    def leak(self, o: ObjectSpec) -> None:
        assert o.level is not None and o.category is not None
        src = self.by_level[o.level]
        hu = self._hu(o.hu) if o.hu is not None else src.hu
        body = self.ref.body(o.level, o.where_text)
        centre, semi = _extent(body.points_mm())
        sx = {"right": -1.0, "left": 1.0, "midline": 0.0}[o.side]
        c0 = np.asarray(src.centroid_lps_mm)
        vert = MaskShape(self.ref.vertebra(o.level, o.where_text))
        cat = o.category
        if cat in DEFAULT_LEAK_VOLUME_ML:
            volume = o.volume_ml or DEFAULT_LEAK_VOLUME_ML[cat]
            region, target, radii = self._leak_region(o, body, centre, semi, sx, vert)
            make = blob(target, radii, self.rng, 4)
            main = fit_volume(lambda s: Intersect((make(s), region)), volume)
            bridge = Tube(np.array([c0, target]), np.array([1.6, 1.6]))
            shape: Shape = Subtract(Union((main, bridge)), (src.shape,))
            shape = leave_body(shape, src, MaskShape(body))
            if cat == "paravertebral_soft_tissue":
                shape = Subtract(shape, (MaskShape(body, margin_mm=-1.3),))
            obj = self._new(category=cat, shape_kind="amorphous", shape=shape, hu=hu, side="",
                            level=o.level, yeom_type=YEOM[cat], connected_to=src.id)  # fmt: skip
            if obj.volume_ml < 0.3 * volume:
                self.warnings.append(f"{o.level} {cat} leak: {obj.volume_ml:.2f} mL placed "
                                     f"(asked {volume:.2f} mL; little room there)")  # fmt: skip
            return
        self._vein_leak(o, src, hu, body, centre, semi, sx, c0)

    def _leak_region(self, o: ObjectSpec, body: Region, centre: np.ndarray, semi: np.ndarray,
                     sx: float, vert: MaskShape) -> tuple[Shape, np.ndarray, np.ndarray]:  # fmt: skip
        assert o.level is not None
        ref, where = self.ref, o.where_text
        if o.category == "disc":
            k = LEVELS.index(o.level) + (1 if o.direction == "caudal" else -1)
            if not 0 <= k < len(LEVELS) or not ref.has(f"vertebrae_{LEVELS[k]}"):
                raise InputError(f"{where}: no labelled vertebra {o.direction} to {o.level} "
                                 "(a disc leak needs both neighbours of the disc)")  # fmt: skip
            other_level = LEVELS[k]
            other = ref.body(other_level, where)
            oc, osemi = _extent(other.points_mm())
            upper, lower = (body, other) if o.direction == "caudal" else (other, body)
            up_pts, lo_pts = upper.points_mm(), lower.points_mm()
            mid_xy = 0.5 * (centre[:2] + oc[:2])
            near = 0.5 * min(semi[0], osemi[0])
            up_z = up_pts[np.linalg.norm(up_pts[:, :2] - mid_xy, axis=1) < near][:, 2]
            lo_z = lo_pts[np.linalg.norm(lo_pts[:, :2] - mid_xy, axis=1) < near][:, 2]
            if len(up_z) == 0 or len(lo_z) == 0:
                raise InputError(f"{where}: the bodies around the disc do not line up")
            z_hi, z_lo = float(up_z.min()), float(lo_z.max())
            if z_hi - z_lo < 2.0:
                raise InputError(f"{where}: no disc space between {o.level} and {other_level}")
            both = (vert, MaskShape(ref.vertebra(other_level, where)))
            ax, ay = 0.5 * (semi[0] + osemi[0]), 0.5 * (semi[1] + osemi[1])
            # Endplates tilt with the lordosis: the slab reaches past them and the two
            # vertebrae are cut out of it, leaving the disc space between them.
            slab = EllipticSlab((float(mid_xy[0]), float(mid_xy[1])), (ax - 3.0, ay - 3.0),
                                z_lo - 4.0, z_hi + 4.0)  # fmt: skip
            region: Shape = Subtract(slab, both)
            target = np.array(
                [mid_xy[0] + sx * 0.3 * ax, mid_xy[1] - 0.1 * ay, 0.5 * (z_lo + z_hi)]
            )
            return region, target, np.array([ax * 0.45, ay * 0.45, max(z_hi - z_lo, 3.0) * 0.6])
        if o.category == "epidural":
            canal = ref.canal(o.level, where)
            mid = ref.midline_x(float(centre[2]))
            cx = centre[0] if mid is None else mid
            front = _canal_front(canal, float(centre[2]))
            region = Subtract(MaskShape(canal, margin_mm=-2.0), (vert,))
            target = np.array([cx + sx * 3.0, front + 2.5, centre[2]])
            return region, target, np.array([6.0, 2.5, 8.0])
        if o.category == "foraminal":
            canal = ref.canal(o.level, where)
            cpts = canal.points_mm()
            cpts = cpts[np.abs(cpts[:, 2] - centre[2]) < 10.0]
            half_w = 0.5 * float(np.ptp(cpts[:, 0])) if len(cpts) else 8.0
            mid = ref.midline_x(float(centre[2]))
            cx = centre[0] if mid is None else mid
            s = sx if sx else -1.0
            front = _canal_front(canal, float(centre[2]))
            # The foramen: lateral to the canal, behind the lower half of the body.
            target = np.array([cx + s * (half_w + 5.0), front + 4.0, centre[2] - 0.5 * semi[2]])
            holes: list[Shape] = [vert]
            k = LEVELS.index(o.level) + 1
            if k < len(LEVELS) and ref.has(f"vertebrae_{LEVELS[k]}"):
                holes.append(MaskShape(ref.vertebra(LEVELS[k], where)))
            region = Subtract(Ellipsoid(tuple(target), (4.5, 5.0, 6.0)), tuple(holes))
            return region, target, np.array([3.0, 3.5, 4.0])
        # paravertebral soft tissue: lateral to the body, or prevertebral when midline
        if sx == 0.0:
            target = np.array([centre[0], centre[1] - semi[1] - 7.0, centre[2]])
        else:
            target = np.array([centre[0] + sx * (semi[0] + 7.0), centre[1] - 0.3 * semi[1],
                               centre[2]])  # fmt: skip
        cut: list[Shape] = [vert]
        for vessel in ("aorta", "inferior_vena_cava"):
            r = ref.region(vessel)
            if r is not None:
                cut.append(MaskShape(r))
        region = Subtract(Ellipsoid(tuple(target), (14.0, 14.0, 16.0)), tuple(cut))
        return region, target, np.array([7.0, 8.0, 9.0])

    def _vein_leak(self, o: ObjectSpec, src: TruthObject, hu: float, body: Region,
                   centre: np.ndarray, semi: np.ndarray, sx: float, c0: np.ndarray) -> None:  # fmt: skip
        s = sx if sx else -1.0
        pts_b = body.points_mm()
        slab = pts_b[np.abs(pts_b[:, 2] - c0[2]) < max(3.0, self.slice_mm)]
        edge = float(slab[:, 0].min() if s < 0 else slab[:, 0].max())
        wall = np.array([edge + s * 1.0, centre[1] - 0.2 * semi[1], c0[2]])
        outer = np.array([edge + s * 7.0, centre[1] - 0.7 * semi[1], c0[2] + 3.0])
        lumen: Shape | None = None
        ivc = self.ref.region("inferior_vena_cava")
        end: np.ndarray | None = None
        if o.category == "azygos":
            assert o.target_lps_mm is not None
            end = np.asarray(o.target_lps_mm, dtype=float)
        elif o.to == "ivc" and ivc is not None:
            line = _centreline(ivc)
            z = c0[2] + 5.0
            if line[0][0, 2] - 3.0 <= z <= line[0][-1, 2] + 3.0:
                end = _line_at(line[0], z)
                lumen = MaskShape(ivc, margin_mm=0.8)
            else:
                self.warnings.append(f"{o.level} vein leak: no IVC label at its height; the "
                                     "tract ends in the paravertebral plexus")  # fmt: skip
        pts = np.vstack([c0, wall, outer]) if end is None else np.vstack([c0, wall, outer, end])
        if end is None:
            pts[-1] = pts[-2] + 0.6 * (pts[-1] - pts[-2])
            pts = (
                pts
                if o.length_mm is None
                else trim_path(pts, float(self.rng.uniform(*o.length_mm)))
            )
        tube = Tube(pts, np.full(len(pts), MIDLINE_VEIN_RADIUS_MM))
        holes: tuple[Shape, ...] = (src.shape,) if lumen is None else (src.shape, lumen)
        inside = MaskShape(body)
        outside = leave_body(Subtract(tube, holes), src, inside)
        holes = (*holes, inside)
        vein = self._new(category="paravertebral_vein", shape_kind="linear",
                         shape=outside, hu=hu, side="", level=o.level,
                         yeom_type="S", connected_to=src.id)  # fmt: skip
        vein.length_mm = length_outside_mm(pts, holes)
        if lumen is not None:
            self.ivc_inflows.append((vein, tube))
        if o.category == "azygos" and end is not None:
            top = end + np.array([0.0, 0.0, 20.0])
            cast = Subtract(Tube(np.vstack([end, top]), np.array([2.4, 2.4])), (tube,))
            az = self._new(category="azygos", shape_kind="cast", shape=Union((cast,)), hu=hu,
                           side="", connected_to=vein.id)  # fmt: skip
            az.length_mm = 20.0

    # -- IVC ------------------------------------------------------------------------------------
    def ivc_cast(self, o: ObjectSpec) -> None:
        assert o.level is not None and o.to_level is not None
        where = o.where_text
        ivc = self.ref.need(where, "inferior_vena_cava")
        z0 = float(_extent(self.ref.body(o.level, where).points_mm())[0][2])
        z1 = float(_extent(self.ref.body(o.to_level, where).points_mm())[0][2])
        line, radius = _centreline(ivc)
        if line[0, 2] > z0 + 3.0 or line[-1, 2] < z1 - 3.0:
            raise InputError(f"{where}: the IVC label spans z {line[0, 2]:.0f}..{line[-1, 2]:.0f} "
                             f"mm, not {o.level} ({z0:.0f}) to {o.to_level} ({z1:.0f})")  # fmt: skip
        z0, z1 = max(z0, float(line[0, 2])), min(z1, float(line[-1, 2]))
        zs = np.linspace(z0, z1, max(3, int((z1 - z0) / 8.0) + 1))
        pts = np.array([_line_at(line, z) for z in zs])
        r_ivc = float(np.median(radius[(line[:, 2] >= z0) & (line[:, 2] <= z1)]))
        r = o.radius_mm if o.radius_mm is not None else min(0.45 * r_ivc, 4.0)
        pts[1:-1, :2] += self.rng.normal(0.0, 0.12 * r_ivc, size=(len(pts) - 2, 2))
        radii = np.clip(r + self.rng.normal(0.0, 0.1 * r, size=len(pts)), 0.75 * r, 1.25 * r)
        # The cast's ends stay inside the asked span so its cranial level is the one asked.
        pts[0, 2] += r
        pts[-1, 2] -= r
        lumen = MaskShape(ivc, margin_mm=IVC_WALL_MARGIN_MM)
        parts: list[Shape] = [Tube(pts, radii)]
        upstream: int | None = None
        for vein, tube in self.ivc_inflows:
            if z0 - 5.0 <= vein.centroid_lps_mm[2] <= z1 + 5.0:
                parts.append(tube)
                upstream = vein.id
        hu = self._hu(o.hu) if o.hu is not None else (
            self.objects[upstream - 1].hu if upstream else self._hu(None))  # fmt: skip
        shape = Intersect((Union(tuple(parts)), lumen))
        cast = self._new(category="ivc", shape_kind="cast", shape=shape, hu=hu, side="",
                         connected_to=upstream)  # fmt: skip
        cast.length_mm = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum() + 2 * r)
        cast.extra["z_range_mm"] = [round(z0, 2), round(z1, 2)]
        cast.extra["cranial_level"] = o.to_level
        self.clip[cast.id] = ivc

    # -- heart ------------------------------------------------------------------------------------
    def right_heart(self, o: ObjectSpec) -> None:
        where = o.where_text
        heart = self.ref.need(where, "heart")
        assert o.size_mm is not None
        sp = np.asarray(self.ref.grid.spacing_mm)
        depth = ndimage.distance_transform_edt(heart.mask, sampling=sp)
        pts_idx = np.argwhere(depth >= 0.5 * o.size_mm + HEART_MARGIN_MM)
        if len(pts_idx) == 0:
            raise InputError(f"{where}: the heart label is too small for {o.size_mm:g} mm cement")
        pts = _mm(self.ref.grid, pts_idx + heart.start)
        c, semi = _extent(heart.points_mm())
        # Right-anterior: the right atrium lies right (-x), the right ventricle anterior (-y);
        # right counts double so that the pick is not the left ventricle's anterior wall.
        score = -2.0 * (pts[:, 0] - c[0]) / semi[0] - (pts[:, 1] - c[1]) / semi[1]
        top = np.flatnonzero(score >= np.percentile(score, 95))
        p = pts[int(self.rng.choice(top))]
        inner = MaskShape(heart, margin_mm=HEART_MARGIN_MM * 0.5)
        if o.shape == "nodular":
            r = 0.5 * o.size_mm
            shape: Shape = Intersect((Ellipsoid(tuple(p), (r, 0.85 * r, r)), inner))
            length = o.size_mm
        else:
            d = self.rng.normal(size=3)
            d /= np.linalg.norm(d)
            half = 0.5 * o.size_mm
            shape = Intersect((Tube(np.array([p - half * d, p + half * d]), np.array([1.8, 1.5])),
                               inner))  # fmt: skip
            length = o.size_mm
        obj = self._new(category="right_heart", shape_kind=o.shape, shape=shape,
                        hu=self._hu(o.hu), side="", length_mm=length)  # fmt: skip
        self.clip[obj.id] = heart

    # -- emboli ---------------------------------------------------------------------------------
    def emboli(self, o: ObjectSpec) -> None:
        hu = self._hu(o.hu) if o.hu is not None else (
            self.objects[0].hu if self.objects else self._hu(None))  # fmt: skip
        sep = o.min_separation_mm if o.min_separation_mm is not None else 2.0 * self.slice_mm
        placed = [(p, r) for p, r, _ in getattr(self, "_placed", [])]
        self._placed: list[tuple[np.ndarray, np.ndarray, int]] = getattr(self, "_placed", [])
        sides = ["right"] * o.side_counts["right"] + ["left"] * o.side_counts["left"]
        for k, side in enumerate(sides):
            kind = o.kinds[k % len(o.kinds)]
            field_ = self._vessels(o, side)
            zones = [None] if o.zone == "any" else [o.zone, None]
            ok = False
            for zone in zones:
                ok = self._place(o, field_, side, zone, kind, hu, sep, placed)
                if ok:
                    if zone is None and o.zone != "any":
                        self.warnings.append(f"embolus {k + 1} ({side}) placed outside the "
                                             f"{o.zone} zone (no room left there)")  # fmt: skip
                    break
            if not ok:
                room = "lung lobes" if o.where == "lobes" else "pulmonary_artery label"
                raise InputError(f"{o.where_text}: embolus {k + 1} ({side}, {kind}): no vessel "
                                 f"in the {side} {room} fits it {sep:.1f} mm from the others")  # fmt: skip

    def _vessels(self, o: ObjectSpec, side: str) -> _VesselField:
        key = (o.where, side if o.where == "lobes" else "central")
        cache: dict[tuple[str, str], _VesselField] = self.__dict__.setdefault("_fields", {})
        if key not in cache:
            cache[key] = _VesselField.build(self.ref, o.where, side, o.where_text)
        return cache[key]

    def _place(self, o: ObjectSpec, vf: _VesselField, side: str, zone: str | None, kind: str,
               hu: float, sep: float, placed: list[tuple[np.ndarray, np.ndarray]]) -> bool:  # fmt: skip
        ref = self.ref
        cand = vf.candidates(side)
        if zone is not None:
            cand = cand[[ref.lung_zone(side, float(p[2])) == zone for p in vf.skel_mm[cand]]]
        if len(cand) == 0:
            return False
        for idx in self.rng.permutation(cand)[:EMBOLUS_TRIES]:
            p = vf.skel_mm[int(idx)]
            r_v = vf.radius_at(p)
            if kind == "linear":
                r = 0.5 * float(self.rng.uniform(*o.width_mm))
                assert o.length_mm is not None
                length = float(self.rng.uniform(*o.length_mm))
                if o.where == "lobes" and not r * 0.8 <= r_v <= PERIPHERAL_MAX_VESSEL_RADIUS_MM:
                    continue
                if o.where == "central" and r_v < r + 1.0:
                    continue
                d, span = vf.direction_at(int(idx), 0.5 * length + 2.0, max(1.0, r_v))
                if d is None:
                    continue
                if span < length:
                    if span < max(o.length_mm[0], 5.0):
                        continue
                    length = span
                line = np.linspace(p - 0.5 * length * d, p + 0.5 * length * d,
                                   max(3, int(length / 0.5)))  # fmt: skip
                radii = np.full(len(line), r)
                shape: Shape = Tube(np.array([line[0], line[-1]]), np.array([r, r]))
                total = length + 2 * r
            else:
                r = 0.5 * float(self.rng.uniform(*o.diameter_mm))
                if o.where == "lobes" and not r * 0.6 <= r_v <= PERIPHERAL_MAX_VESSEL_RADIUS_MM:
                    continue
                line, radii = p[None, :], np.array([r])
                shape = Ellipsoid(tuple(p), (r, r, r))
                total = 2 * r
            if vf.in_vessel(line).mean() < 0.8 or not vf.in_room(line, r).all():
                continue
            if any(tube_gap_mm(line, radii, q, qr) < sep for q, qr in placed):
                continue
            obj_side, lobe = (side, None) if o.where == "central" else ref.lung_side(p)
            if obj_side != side:
                continue
            obj = self._new(category="pulmonary_artery", shape_kind=kind, shape=shape, hu=hu,
                            side=side, central=o.where == "central", length_mm=total)  # fmt: skip
            obj.lung_zone = ref.lung_zone(side, obj.centroid_lps_mm[2])
            obj.extra["lobe"] = lobe
            obj.extra["vessel_radius_mm"] = round(r_v, 2)
            placed.append((line, radii))
            self._placed.append((line, radii, obj.id))
            self.clip[obj.id] = vf.room
            return True
        return False

    # -- hand-placed ------------------------------------------------------------------------------
    def at(self, o: ObjectSpec) -> None:
        assert o.center_lps_mm is not None and o.category is not None and o.radius_mm is not None
        c = np.asarray(o.center_lps_mm, dtype=float)
        if not _inside_grid(self.ref.grid, c[None, :])[0]:
            raise InputError(f"{o.where_text}: center_lps_mm {c.tolist()} is outside the CT")
        r = o.radius_mm
        side, lobe = self.ref.lung_side(c) if o.category == "pulmonary_artery" else (None, None)
        obj = self._new(category=o.category, shape_kind="nodular",
                        shape=Ellipsoid(tuple(c), (r, r, r)), hu=self._hu(o.hu),
                        side=side or "", length_mm=2 * r)  # fmt: skip
        if o.category == "pulmonary_artery":
            obj.central = False
            if side is not None:
                obj.lung_zone = self.ref.lung_zone(side, float(c[2]))
            obj.extra["lobe"] = lobe
        if o.category == "ivc":
            obj.extra["z_range_mm"] = [round(c[2] - r, 2), round(c[2] + r, 2)]


def _ring_hole(ring: np.ndarray, grid: Grid, y_mm: np.ndarray, y_min_mm: float
               ) -> np.ndarray | None:  # fmt: skip
    """The canal in one axial slice of a vertebra label: its largest enclosed hole behind
    ``y_min_mm`` (the vertebra's centroid, less a margin).

    Holes in front (gaps in a body's label, a hollow endplate) are not the canal, nor are
    holes under CANAL_MIN_AREA_MM2.
    """
    filled = ndimage.binary_fill_holes(ring)
    if filled is None:
        return None
    lab, n = ndimage.label(filled & ~ring)
    best, best_n = 0, 0
    for i in range(1, n + 1):
        comp = lab == i
        cnt = int(comp.sum())
        if cnt > best_n and float(y_mm[np.argwhere(comp)[:, 1]].mean()) >= y_min_mm:
            best, best_n = i, cnt
    if best == 0 or best_n * grid.spacing_mm[0] * grid.spacing_mm[1] < CANAL_MIN_AREA_MM2:
        return None
    return np.asarray(lab == best)


def _canal_front(canal: Region, z_mm: float) -> float:
    pts = canal.points_mm()
    near = pts[np.abs(pts[:, 2] - z_mm) <= max(3.0, 0.6 * canal.grid.spacing_mm[2])]
    use = near if len(near) else pts
    return float(np.percentile(use[:, 1], 5))


def _centreline(vessel: Region) -> tuple[np.ndarray, np.ndarray]:
    """A vertical vessel's per-slice centroid (n, 3), smoothed, and its equivalent radius (mm)."""
    g = vessel.grid
    pts, radius = [], []
    area_mm2 = g.spacing_mm[0] * g.spacing_mm[1]
    for k in range(vessel.mask.shape[2]):
        sl = vessel.mask[:, :, k]
        n = int(sl.sum())
        if n * area_mm2 < 20.0:  # a clipped edge, not a lumen
            continue
        ij = np.argwhere(sl).mean(axis=0)
        pts.append(_mm(g, np.array([ij[0], ij[1], k]) + vessel.start))
        radius.append(math.sqrt(n * area_mm2 / math.pi))
    if len(pts) < 2:
        raise InputError("the IVC label is too small to follow")
    line = np.array(pts)
    if len(line) >= 5:
        for a in (0, 1):
            line[:, a] = ndimage.uniform_filter1d(line[:, a], 5, mode="nearest")
    return line, np.array(radius)


def _line_at(line: np.ndarray, z: float) -> np.ndarray:
    return np.array([np.interp(z, line[:, 2], line[:, 0]), np.interp(z, line[:, 2], line[:, 1]), z])


@dataclass
class _VesselField:
    """Vessel centrelines (skeleton) inside a room (eroded lung lobes, or the PA label)."""

    grid: Grid
    sl: tuple[slice, slice, slice]
    vessel: np.ndarray  # bool crop
    room: Region  # where cement may sit (eroded lobes / PA label)
    skel_mm: np.ndarray  # (n, 3)
    skel_side: np.ndarray  # (n,) "right"/"left"
    skel_ijk: np.ndarray  # crop indices (n, 3)

    @classmethod
    def build(cls, ref: Reference, where: str, side: str, where_text: str) -> _VesselField:
        from skimage.morphology import skeletonize

        g = ref.grid
        sp = np.asarray(g.spacing_mm)
        if where == "lobes":
            lungs = ref.region(*(RIGHT_LOBES if side == "right" else LEFT_LOBES))
            if lungs is None:
                raise InputError(f"{where_text}: the reference labels have no {side} lung lobes")
            # Erode by LUNG_EDGE_MARGIN_MM (per axis in voxels; at least one voxel in z).
            it = [max(1, round(LUNG_EDGE_MARGIN_MM / s)) for s in sp]
            room_mask = ndimage.binary_erosion(
                lungs.mask, structure=np.ones((2 * it[0] + 1, 1, 1), bool)
            )
            room_mask = ndimage.binary_erosion(
                room_mask, structure=np.ones((1, 2 * it[1] + 1, 1), bool)
            )
            room_mask = ndimage.binary_erosion(
                room_mask, structure=np.ones((1, 1, 2 * it[2] + 1), bool)
            )
            sl = lungs.sl
            vessel = room_mask & (ref.hu[sl] > VESSEL_MIN_HU)
            room = Region(sl, room_mask, g)
        else:
            pa = ref.region("pulmonary_artery")
            if pa is None:
                raise InputError(f"{where_text}: central emboli need a pulmonary_artery label")
            sl, vessel = pa.sl, pa.mask.copy()
            room = pa
        skel = skeletonize(vessel) > 0
        lab, n = ndimage.label(skel, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        keep = sizes >= 6  # isolated specks are noise, not vessels
        keep[0] = False
        ijk = np.argwhere(keep[lab])
        pts = _mm(g, ijk + np.array([s.start for s in sl]))
        if where == "lobes":
            skel_side = np.full(len(pts), side)
        else:
            # Central arteries: the right PA runs to the patient's right (-x) of the trunk's
            # bifurcation, the left PA to the left and posterior; the trunk itself is skipped.
            c = room.centroid_mm()
            skel_side = np.full(len(pts), "", dtype=object)
            skel_side[pts[:, 0] < c[0] - 15.0] = "right"
            skel_side[(pts[:, 0] > c[0] + 15.0) & (pts[:, 1] > c[1])] = "left"
        return cls(g, sl, vessel, room, pts, skel_side.astype(str), ijk)

    def candidates(self, side: str) -> np.ndarray:
        return np.flatnonzero(self.skel_side == side)

    def _crop_idx(self, pts_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = (pts_mm - np.asarray(self.grid.origin_lps_mm)) / np.asarray(self.grid.spacing_mm)
        ijk = np.rint(f).astype(int) - np.array([s.start for s in self.sl])
        ok = np.all((ijk >= 0) & (ijk < np.asarray(self.vessel.shape)), axis=-1)
        return ijk, ok

    def in_vessel(self, pts_mm: np.ndarray) -> np.ndarray:
        ijk, ok = self._crop_idx(pts_mm)
        out = np.zeros(len(pts_mm), dtype=bool)
        out[ok] = self.vessel[tuple(ijk[ok].T)]
        return out

    def in_room(self, pts_mm: np.ndarray, r_mm: float) -> np.ndarray:
        """Whether each point has at least ``r_mm`` of room around it along the axes."""
        offsets = np.vstack([np.zeros(3), np.eye(3) * r_mm, -np.eye(3) * r_mm])
        out = np.ones(len(pts_mm), dtype=bool)
        for off in offsets:
            out &= self.room.contains(pts_mm + off)
        return out

    def radius_at(self, p: np.ndarray) -> float:
        """The vessel's radius (mm) at ``p``: EDT of the vessel mask in a small window."""
        sp = np.asarray(self.grid.spacing_mm)
        ijk, ok = self._crop_idx(p[None, :])
        if not ok[0]:
            return 0.0
        half = np.ceil(8.0 / sp).astype(int)
        lo = np.maximum(ijk[0] - half, 0)
        hi = np.minimum(ijk[0] + half + 1, np.asarray(self.vessel.shape))
        win = self.vessel[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        edt = ndimage.distance_transform_edt(np.pad(win, 1), sampling=sp)
        c = ijk[0] - lo + 1
        # The voxel-centre EDT counts to the next background centre: the wall is half a
        # pixel nearer.
        return float(edt[tuple(c)]) - 0.5 * float(sp[:2].min())

    def direction_at(
        self, i: int, reach_mm: float, tol_mm: float
    ) -> tuple[np.ndarray | None, float]:
        """Principal direction of the skeleton near point ``i`` and its straight span (mm)."""
        p = self.skel_mm[i]
        near = np.flatnonzero(np.linalg.norm(self.skel_mm - p, axis=1) <= reach_mm)
        if len(near) < 3:
            return None, 0.0
        q = self.skel_mm[near]
        # Keep only the skeleton connected to p (another vessel may pass within reach).
        local = self.skel_ijk[near] - self.skel_ijk[near].min(axis=0)
        grid = np.zeros(local.max(axis=0) + 1, dtype=bool)
        grid[tuple(local.T)] = True
        lab, _ = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
        mine = lab[tuple(local.T)] == lab[tuple(local[near == i][0])]
        q = q[mine]
        if len(q) < 3:
            return None, 0.0
        centred = q - q.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        d = vt[0]
        t = (q - p) @ d
        perp = np.linalg.norm((q - p) - np.outer(t, d), axis=1)
        straight = perp <= tol_mm
        if straight.sum() < 3:
            return None, 0.0
        span = 2.0 * min(float(t[straight].max()), float(-t[straight].min()))
        return d, span


# =============================================================================================
# Rendering and noise
# =============================================================================================
def _gauss_kernel(sigma_vox: float) -> np.ndarray:
    if sigma_vox <= 0:
        return np.ones(1)
    radius = int(4.0 * sigma_vox + 0.5)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma_vox) ** 2)
    return k / k.sum()


def estimate_noise_hu(ref: Reference) -> tuple[float, str]:
    """The scan's noise sigma (HU): median local SD in homogeneous muscle / liver / tissue."""
    hu = ref.hu
    candidates: list[tuple[str, Region | None]] = [(n, ref.region(n)) for n in MUSCLE_LABELS]
    for name, region in candidates:
        if region is None or region.voxels < NOISE_MIN_VOXELS:
            continue
        sigma = _local_sd(hu[region.sl].astype(np.float32), region.mask)
        if sigma is not None:
            return sigma, name
    # No muscle label: soft tissue by HU (fat/water/muscle band), away from its edges.
    step = max(1, ref.grid.shape[2] // 40)
    block = hu[:, :, ::step].astype(np.float32)
    sigma = _local_sd(block, (block > -50) & (block < 120))
    if sigma is not None:
        return sigma, "soft tissue (-50..120 HU)"
    return NOISE_FALLBACK_HU, "fallback"


def _local_sd(block: np.ndarray, mask: np.ndarray) -> float | None:
    w = NOISE_WINDOW_VOXELS
    inner = ndimage.binary_erosion(mask, structure=np.ones((w, w, 1), bool))
    if inner.sum() < NOISE_MIN_VOXELS // 5:
        return None
    m = ndimage.uniform_filter(block, size=(w, w, 1))
    m2 = ndimage.uniform_filter(block * block, size=(w, w, 1))
    sd = np.sqrt(np.maximum(m2 - m * m, 0.0))[inner]
    # Unbiased: a w*w window's sample SD underestimates sigma by sqrt((n-1)/n).
    return float(np.median(sd) * math.sqrt(w * w / (w * w - 1)))


@dataclass
class Rendered:
    hu: np.ndarray  # int16, storage order
    truth: np.ndarray  # uint16, storage order
    noise_hu: float
    noise_source: str
    psf_fwhm_mm: float
    slice_sigma_mm: float


def render(vol: CTVolume, frame: LpsFrame, ref: Reference, objects: list[TruthObject],
           spec: InsertSpec, rng: np.random.Generator,
           clip: dict[int, Region]) -> Rendered:  # fmt: skip
    """Paint the objects into a copy of the CT (partial volume, PSF, noise) and label them."""
    g = frame.grid
    sp = np.asarray(g.spacing_mm)
    fwhm = (
        spec.psf_fwhm_mm
        if spec.psf_fwhm_mm is not None
        else max(PSF_FWHM_MIN_MM, float(sp[:2].max()))
    )
    sig_mm = np.array([fwhm / FWHM_PER_SIGMA] * 2 + [SLICE_EDGE_SIGMA_PER_SPACING * sp[2]])
    sig_vox = sig_mm / sp
    kernels = [_gauss_kernel(float(s)) for s in sig_vox]
    pad = np.array([len(k) // 2 for k in kernels])
    if spec.noise_hu is not None:
        noise_hu, noise_src = spec.noise_hu, "spec"
    else:
        noise_hu, noise_src = estimate_noise_hu(ref)
    truth_store = np.zeros(vol.shape, dtype=np.uint16)
    truth = frame.view(truth_store)
    f_sum = np.zeros(g.shape, dtype=np.float32)
    a_sum = np.zeros(g.shape, dtype=np.float32)
    for obj in objects:
        res = coverage(obj.shape, g)
        if res is None:
            continue
        crop, cov = res
        peak = float(cov.max(initial=0.0))
        if peak <= 0.0:
            continue
        owned = owned_voxels(cov)
        if obj.id in clip:  # a voxel whose centre is outside the intended label is not ours
            reg = clip[obj.id]
            idx = np.argwhere(owned)
            pts = _mm(g, idx + np.array([s.start for s in crop]))
            outside = ~reg.contains(pts)
            owned[tuple(idx[outside].T)] = False
            obj.extra["label_clipped_voxels"] = int(outside.sum())
        truth[crop][owned] = obj.id
        lo = np.array([s.start for s in crop]) - pad
        hi = np.array([s.stop for s in crop]) + pad
        lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, g.shape)
        big = np.zeros(tuple(hi - lo), dtype=np.float32)
        inner = tuple(slice(int(p), int(p) + n) for p, n in zip(pad, cov.shape, strict=True))
        big[inner] = cov
        for a, k in enumerate(kernels):
            if len(k) > 1:
                big = ndimage.convolve1d(big, k, axis=a, mode="constant")
        take = tuple(slice(int(c - b), int(h - b)) for c, b, h in zip(lo_c, lo, hi_c, strict=True))
        dst = tuple(slice(int(c), int(h)) for c, h in zip(lo_c, hi_c, strict=True))
        f_sum[dst] += big[take]
        a_sum[dst] += big[take] * np.float32(obj.hu)
    touched = f_sum > COVERAGE_EPS
    out_store = vol.hu.astype(np.int32, copy=True)
    out = frame.view(out_store)
    changed = Region.from_full(touched, g)
    if changed is not None:
        reg = changed
        f = np.minimum(f_sum[reg.sl], 1.0)
        cement = a_sum[reg.sl] / np.maximum(f_sum[reg.sl], 1.0)
        tissue = out[reg.sl].astype(np.float32)
        noise = rng.standard_normal(f.shape, dtype=np.float32)
        for ax, k in enumerate(kernels):
            if len(k) > 1:
                noise = ndimage.convolve1d(noise, k.astype(np.float32), axis=ax, mode="reflect")
        noise /= np.float32(math.sqrt(float(np.prod([np.sum(k * k) for k in kernels]))))
        new = (
            (1.0 - f) * tissue
            + cement
            + noise * np.float32(noise_hu) * np.sqrt(1.0 - (1.0 - f) ** 2)
        )
        # A standard-scale scan saturates at 3071 HU; an extended-scale one does not.
        ceiling = 3071 if int(vol.hu.max()) <= 3071 else np.iinfo(np.int16).max
        new_i = np.clip(np.rint(new), -1024 if int(vol.hu.min()) >= -1024 else -32768, ceiling)
        view = out[reg.sl]
        view[reg.mask] = new_i[reg.mask].astype(np.int32)
    return Rendered(out_store.astype(np.int16), truth_store, float(noise_hu), noise_src, fwhm,
                    float(sig_mm[2]))  # fmt: skip


# =============================================================================================
# The command's work
# =============================================================================================
@dataclass
class InsertResult:
    """The inserted CT, its truth label map and truth.json, on the input's grid."""

    ct: CTVolume
    truth_labels: np.ndarray
    truth: dict[str, Any]
    objects: list[TruthObject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def insert_cement(input_path: str | Path, spec: InsertSpec, *,
                  labels: list[tuple[Path, Path | None]] | None = None,
                  seed: int | None = None) -> InsertResult:  # fmt: skip
    """Load ``input_path``, place the spec's cement from the reference labels, render it."""
    path = Path(input_path)
    vol = load_volume(path)
    frame = LpsFrame.of(vol)
    files = labels if labels else default_label_files(path)
    if not files:
        raise InputError("no reference labels beside the input (labels.nii.gz, vertebrae.nii.gz, "
                         "pulmonary_artery.nii.gz); give --labels", path=path)  # fmt: skip
    hu_lps = frame.view(vol.hu)
    ref = Reference(vol, hu_lps, frame, files)
    used_seed = spec.seed if seed is None else seed
    rng = np.random.default_rng(used_seed)
    builder = Builder(ref, spec, rng)
    objects = builder.build()
    rendered = render(vol, frame, ref, objects, spec, np.random.default_rng([used_seed, 1]),
                      builder.clip)  # fmt: skip
    for obj in objects:
        n = int(np.count_nonzero(rendered.truth == obj.id))
        obj.extra["label_voxels"] = n
        if n == 0:
            builder.warnings.append(f"object {obj.id} ({obj.category}) is too thin to own a voxel")
    ct = CTVolume(rendered.hu, vol.spacing_mm, vol.origin_lps_mm, vol.direction, vol.source,
                  vol.warnings)  # fmt: skip
    g = frame.grid
    z_lo = g.origin_lps_mm[2] - 0.5 * g.spacing_mm[2]
    z_hi = g.origin_lps_mm[2] + (g.shape[2] - 0.5) * g.spacing_mm[2]
    cov_names = ref.coverage_names()
    summary = summarize(objects, cov_names, list(LEVELS), [(z_lo, z_hi)], ref.level_spans())
    truth = {
        "schema": TRUTH_SCHEMA,
        "generator": "insert",
        "seed": used_seed,
        "spec": spec.to_dict(),
        "input": str(path),
        "reference_labels": ref.files,
        "series": [
            {
                "index": 0,
                "file": "ct.nii.gz",
                "series_uid": vol.source.series_uid,
                "shape": list(vol.shape),
                "spacing_mm": [float(s) for s in vol.spacing_mm],
                "orientation": vol.orientation_code(),
                "z_range_lps_mm": [round(z_lo, 2), round(z_hi, 2)],
                "coverage": sorted(cov_names),
            }
        ],
        "rendering": {
            "noise_hu": round(rendered.noise_hu, 2),
            "noise_source": rendered.noise_source,
            "psf_fwhm_mm": round(rendered.psf_fwhm_mm, 3),
            "slice_edge_sigma_mm": round(rendered.slice_sigma_mm, 3),
            "model": "hu = (1-F)*hu_scan + F*hu_cement + noise*sqrt(1-(1-F)^2), F = PSF*coverage",
        },
        "objects": [o.to_json() for o in objects],
        "confounders": [],
        "summary": summary,
        "warnings": list(builder.warnings),
    }
    return InsertResult(ct, rendered.truth, truth, objects, builder.warnings)


def write_insert(result: InsertResult, out: str | Path) -> list[Path]:
    """Write DIR/ct.nii.gz, DIR/truth_labels.nii.gz and DIR/truth.json atomically."""
    from cementscan.findings.io import write_json_atomic

    out_dir = output_folder(out)
    return [
        write_volume(result.ct, out_dir / "ct.nii.gz"),
        write_labels(result.truth_labels, result.ct, out_dir / "truth_labels.nii.gz"),
        write_json_atomic(result.truth, out_dir / "truth.json"),
    ]
