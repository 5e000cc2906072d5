"""Putting the anatomy together: classical image processing, or TotalSegmentator masks imported."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cementscan.anatomy.body import body_mask, bone_mask
from cementscan.anatomy.contrast import contrast_phase, dense_contrast_veins
from cementscan.anatomy.grid import WorkGrid, make_work_grid
from cementscan.anatomy.heart import RIGHT_ATRIUM, contrast_hidden_regions, find_heart
from cementscan.anatomy.imported import anatomy_from_classes, read_class_masks
from cementscan.anatomy.levels import assign_levels
from cementscan.anatomy.lungs import find_lungs
from cementscan.anatomy.model import Anatomy, LungInfo
from cementscan.anatomy.spine import canal_centerline
from cementscan.anatomy.vertebrae import find_vertebrae
from cementscan.anatomy.vessels import find_venous_route
from cementscan.io.volume import CTVolume

ABDOMEN_BELOW_LUNGS_MM = 50.0  # body this far below the lung bases counts as abdomen


def compute_anatomy(volume: CTVolume, masks_path: Path | None = None) -> Anatomy:
    """The Anatomy of one CT series: classical by default, from TotalSegmentator masks when
    ``masks_path`` is given.

    >>> anatomy = compute_anatomy(load_volume("ct.nii.gz"))  # doctest: +SKIP
    >>> [v.level for v in anatomy.vertebrae]  # doctest: +SKIP
    ['T11', 'T12', 'L1', ...]
    """
    grid = make_work_grid(volume)
    if masks_path is not None:
        imported = anatomy_from_classes(read_class_masks(masks_path, grid), grid)
        phase, dense, warnings = _contrast(grid, imported.masks)
        return replace(
            imported,
            contrast_phase=phase,
            dense_contrast_veins=dense,
            warnings=(*imported.warnings, *warnings),
        )
    return classical_anatomy(grid, volume)


def _contrast(
    grid: WorkGrid, masks: dict[str, np.ndarray]
) -> tuple[str, tuple[str, ...], list[str]]:
    """The contrast phase, the veins undiluted contrast fills, and the warnings they call for
    (the same for classical and imported anatomy: what the detector drops, the report says)."""
    phase = contrast_phase(grid, masks)
    dense = dense_contrast_veins(grid, masks, phase)
    warnings = []
    if dense:
        warnings.append(
            f"undiluted contrast fills {', '.join(dense)}: cement cannot be told from it there"
        )
    if RIGHT_ATRIUM in contrast_hidden_regions(dense, masks):
        warnings.append(
            "undiluted contrast streams from the SVC into the right atrium: cement near the SVC "
            "inflow cannot be told from it, the right heart is not assessable"
        )
    return phase, dense, warnings


def classical_anatomy(grid: WorkGrid, volume: CTVolume) -> Anatomy:
    """Spine and levels, lungs, heart and the venous route, each stage using the ones before."""
    body = body_mask(grid)
    masks: dict[str, np.ndarray] = {"body": body, "bone": bone_mask(grid, body)}
    warnings: list[str] = []

    canal = canal_centerline(grid, body)
    spine = find_vertebrae(grid, body, canal)
    levels = assign_levels(grid, body, spine)
    renamed = levels.mask_names()
    masks.update({renamed.get(name, name): mask for name, mask in spine.masks.items()})
    warnings.extend(spine.warnings)
    warnings.extend(levels.warnings)

    lungs = find_lungs(grid, body, volume)
    masks.update(lungs.masks)
    warnings.extend(lungs.warnings)
    spine_bone = np.zeros(grid.shape, bool)
    for name, mask in spine.masks.items():
        if name.startswith(("vertebral_body", "posterior_elements")):
            spine_bone |= mask
    heart = find_heart(grid, body, lungs.masks, bone=spine_bone)
    masks.update(heart)

    t4 = [v.body_centroid_lps_mm for v in levels.vertebrae if v.level == "T4"]
    arch_slice = int(round(grid.to_index(list(t4[0]))[2])) if t4 else None
    route = find_venous_route(grid, body, canal, heart.get("heart"), arch_slice)
    masks.update(route.masks)
    if "svc" in masks and "heart" in heart:
        # The SVC ends where it enters the right atrium: what of its prior lies in the heart is
        # atrium (the synthetic torso: 11 of 15 ml; a spike there is right-heart cement).
        masks["svc"] = masks["svc"] & ~heart["heart"]
    phase, dense, contrast_warnings = _contrast(grid, masks)
    warnings.extend(contrast_warnings)
    anatomy = Anatomy(
        grid=grid,
        masks=masks,
        vertebrae=levels.vertebrae,
        level_anchor=levels.level_anchor,
        level_confidence=levels.level_confidence,
        canal_centerline_lps_mm=grid.to_lps(canal) if len(canal) else np.zeros((0, 3)),
        ivc_centerline_lps_mm=route.ivc_centerline_lps_mm,
        lungs=lungs.lungs,
        contrast_phase=phase,
        dense_contrast_veins=dense,
        source="classical",
        warnings=tuple(warnings),
    )
    return _with_coverage(anatomy, body)


def _with_coverage(anatomy: Anatomy, body: np.ndarray) -> Anatomy:
    """Name the body regions the scan covers, from levels where known, else from lungs and IVC."""
    levels = {v.level for v in anatomy.vertebrae if v.level}
    regions: list[str] = []
    if any(level.startswith("C") for level in levels):
        regions.append("neck")
    if _covers_chest(anatomy.lungs):
        regions.append("chest")
    body_slices = np.flatnonzero(body.any(axis=(0, 1)))
    if len(body_slices):
        body_low_z = float(anatomy.grid.z_mm(body_slices[0]))
        lung_low_z = min((info.z_range_mm[0] for info in anatomy.lungs.values()), default=None)
        if (
            any(level in levels for level in ("L1", "L2", "L3", "L4"))
            or (lung_low_z is not None and lung_low_z - body_low_z >= ABDOMEN_BELOW_LUNGS_MM)
            or (lung_low_z is None and len(anatomy.ivc_centerline_lps_mm) > 0)
        ):
            regions.append("abdomen")
    if "S1" in levels or "sacrum" in anatomy.masks:
        regions.append("pelvis")
    if any(level.startswith("T") for level in levels):
        regions.append("thoracic_spine")
    if any(level.startswith("L") for level in levels):
        regions.append("lumbar_spine")
    return replace(anatomy, coverage=tuple(regions))


def _covers_chest(lungs: dict[str, LungInfo]) -> bool:
    """A chest is covered when a lung's hilum is in the scan (lung bases alone are not a chest)."""
    return any(info.hilum_lps_mm is not None for info in lungs.values())
