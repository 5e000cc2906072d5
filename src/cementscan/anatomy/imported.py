"""Anatomy from TotalSegmentator output (`--anatomy DIR`): its masks resampled onto the work grid."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cementscan.anatomy.grid import WorkGrid
from cementscan.anatomy.imported_spine import spine_compartments
from cementscan.anatomy.lungs import lung_info
from cementscan.anatomy.model import Anatomy, Vertebra
from cementscan.errors import InputError

# Classes cementscan uses, by their TotalSegmentator name (v2 "total" task) -> our mask name.
DIRECT_NAMES = {
    "inferior_vena_cava": "ivc",
    "superior_vena_cava": "svc",
    "aorta": "aorta",
    "heart": "heart",
    "spinal_cord": "spinal_cord",
    "sacrum": "sacrum",
    "iliac_vena_left": "iliac_vein_left",
    "iliac_vena_right": "iliac_vein_right",
    "pulmonary_artery": "pulmonary_arteries",
    "pulmonary_vein": "pulmonary_veins",
    "azygos": "azygos",
}
LOBES = {
    "lung_upper_lobe_right": "right",
    "lung_middle_lobe_right": "right",
    "lung_lower_lobe_right": "right",
    "lung_upper_lobe_left": "left",
    "lung_lower_lobe_left": "left",
}
VERTEBRA = re.compile(r"^vertebrae_(C[1-7]|T1[0-3]|T[1-9]|L[1-6]|S1)$")
IMPORTED_LEVEL_CONFIDENCE = 0.9  # a model's labels: usually right, not infallible
CANAL_CLEARANCE_MM = 4.0  # body = vertebra voxels at least this far in front of the cord


@cache
def totalsegmentator_v2_names() -> dict[int, str]:
    """TotalSegmentator v2 ``total`` task: label id -> class name (shipped with cementscan)."""
    text = files("cementscan.anatomy").joinpath("totalsegmentator_v2_total.json").read_text()
    return {int(k): v for k, v in json.loads(text).items()}


def _wanted(name: str) -> bool:
    return name in DIRECT_NAMES or name in LOBES or bool(VERTEBRA.match(name))


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))


def read_class_masks(path: Path, grid: WorkGrid) -> dict[str, np.ndarray]:
    """TotalSegmentator class name -> boolean mask on the work grid, resampled in physical space.

    ``path`` is a folder of per-class files (``vertebrae_L4.nii.gz``, ...), a folder holding one
    multilabel file, or that file itself; a multilabel file's ids are read from a labels.json
    beside it when there is one, else as TotalSegmentator v2 ``total`` ids.
    """
    if not path.exists():
        raise InputError("no such file or folder (--anatomy)", path)
    candidates = [path] if path.is_file() else _nifti_files(path)
    per_class = [p for p in candidates if _class_name(p) in totalsegmentator_v2_names().values()]
    if per_class:
        return _read_per_class([p for p in per_class if _wanted(_class_name(p))], grid)
    if len(candidates) != 1:
        raise InputError(
            "expected TotalSegmentator masks: per-class files (vertebrae_L4.nii.gz, ...) or one "
            f"multilabel file, found {len(candidates)} NIfTI files",
            path,
        )
    multilabel = candidates[0]
    names_file = multilabel.parent / "labels.json"
    if names_file.is_file():
        names = {int(k): str(v) for k, v in json.loads(names_file.read_text()).items()}
    else:
        names = totalsegmentator_v2_names()
    image = _read(multilabel)
    wanted = {i: n for i, n in names.items() if _wanted(n)}
    resampled = _to_grid(image, grid)
    return {name: resampled == i for i, name in wanted.items() if np.any(resampled == i)}


def _class_name(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _read(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError("cannot read the mask file", path) from None


def _to_grid(image: sitk.Image, grid: WorkGrid) -> np.ndarray:
    resampled = sitk.Resample(
        sitk.Cast(image, sitk.sitkUInt16),
        grid.reference_image(),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt16,
    )
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)


def _read_per_class(paths: list[Path], grid: WorkGrid) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    for path in paths:
        mask = _to_grid(_read(path), grid) > 0
        if mask.any():
            masks[_class_name(path)] = mask
    return masks


def anatomy_from_classes(classes: dict[str, np.ndarray], grid: WorkGrid) -> Anatomy:
    """Build the Anatomy from TotalSegmentator classes on the work grid."""
    masks: dict[str, np.ndarray] = {}
    for ts_name, ours in DIRECT_NAMES.items():
        if ts_name in classes:
            masks[ours] = classes[ts_name]
    for side in ("right", "left"):
        lobes = [m for n, m in classes.items() if LOBES.get(n) == side]
        if lobes:
            masks[f"lung_{side}"] = np.logical_or.reduce(lobes)
    for name, mask in classes.items():
        if name in LOBES:
            masks[name] = mask  # lobes name findings' `lobe` field
    vertebrae = _vertebrae(classes, grid, masks)
    whole = {m.group(1): mask for n, mask in classes.items() if (m := VERTEBRA.match(n))}
    bodies = {v.level: masks[f"vertebral_body_{v.level}"] for v in vertebrae if v.level}
    masks.update(spine_compartments(whole, bodies, vertebrae, classes.get("spinal_cord"), grid))
    return Anatomy(
        grid=grid,
        masks=masks,
        vertebrae=vertebrae,
        level_anchor="imported" if vertebrae else "none",
        level_confidence=IMPORTED_LEVEL_CONFIDENCE if vertebrae else 0.0,
        canal_centerline_lps_mm=_centerline(masks.get("spinal_canal"), grid),
        ivc_centerline_lps_mm=_centerline(masks.get("ivc"), grid),
        lungs={
            side: lung_info(side, masks[f"lung_{side}"], grid)
            for side in ("right", "left")
            if f"lung_{side}" in masks
        },
        source="imported",
    )


def _centerline(mask: np.ndarray | None, grid: WorkGrid) -> np.ndarray:
    """Centroid of the mask on each axial slice it occupies, in LPS mm (n, 3)."""
    if mask is None:
        return np.zeros((0, 3))
    points = []
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        xs, ys = np.nonzero(mask[:, :, k])
        points.append(grid.to_lps([float(xs.mean()), float(ys.mean()), float(k)]))
    return np.asarray(points)


def _vertebrae(
    classes: dict[str, np.ndarray], grid: WorkGrid, masks: dict[str, np.ndarray]
) -> tuple[Vertebra, ...]:
    """Vertebral bodies: each vertebra's voxels in front of the spinal cord (or, without a cord
    label, in front of the vertebra's own posterior third)."""
    cord = classes.get("spinal_cord")
    cord_y = np.full(grid.shape[2], np.nan)
    if cord is not None:
        for k in np.flatnonzero(cord.any(axis=(0, 1))):
            cord_y[k] = np.nonzero(cord[:, :, k])[1].min()  # the cord's anterior edge
    found: list[Vertebra] = []
    ys = np.arange(grid.shape[1])[None, :, None]
    for name, mask in classes.items():
        match = VERTEBRA.match(name)
        if not match:
            continue
        level = match.group(1)
        limit = cord_y[None, None, :] - CANAL_CLEARANCE_MM / grid.spacing_mm
        if np.all(np.isnan(cord_y[mask.any(axis=(0, 1))])):
            # No cord beside it: keep the anterior 60% of the vertebra's own AP extent.
            y_idx = np.nonzero(mask)[1]
            limit = np.full((1, 1, grid.shape[2]), y_idx.min() + 0.6 * (y_idx.max() - y_idx.min()))
        body = mask & (ys < np.nan_to_num(limit, nan=np.inf))
        if not body.any():
            continue
        masks[f"vertebral_body_{level}"] = body
        ijk = np.argwhere(body)
        lps = grid.to_lps(ijk)
        centroid = lps.mean(axis=0)
        found.append(
            Vertebra(
                level=level,
                body_centroid_lps_mm=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
                z_range_mm=(float(lps[:, 2].min()), float(lps[:, 2].max())),
            )
        )
    found.sort(key=lambda v: -v.body_centroid_lps_mm[2])
    return tuple(found)
