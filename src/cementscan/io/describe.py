"""What the loader sees, as plain data: the content of ``cementscan info``."""

from __future__ import annotations

from typing import Any

from cementscan.io.volume import CTVolume, Study


def describe_volume(volume: CTVolume) -> dict[str, Any]:
    """Geometry (voxel-index order, LPS), HU range and source metadata of one series."""
    source = volume.source
    return {
        "path": source.path,
        "format": source.format,
        "modality": source.modality,
        "series_uid": source.series_uid,
        "series_uid_generated": source.series_uid_generated,
        "shape": list(volume.shape),
        "spacing_mm": [float(s) for s in volume.spacing_mm],
        "origin_lps_mm": [float(o) for o in volume.origin_lps_mm],
        "direction": [[float(v) for v in row] for row in volume.direction],
        "orientation": volume.orientation_code(),
        "hu_min": int(volume.hu.min()),
        "hu_max": int(volume.hu.max()),
        "slice_thickness_mm": source.slice_thickness_mm,
        "kvp": source.kvp,
        "contrast_agent": source.contrast_agent,
        "convolution_kernel": source.convolution_kernel,
        "manufacturer": source.manufacturer,
        "series_description": source.series_description,
        "study_uid": source.study_uid,
        "frame_of_reference_uid": source.frame_of_reference_uid,
        "slices": len(source.files) if source.files else volume.shape[2],
        "warnings": list(volume.warnings),
    }


def describe_study(study: Study) -> dict[str, Any]:
    """The first chosen series' fields at the top level, every chosen series in ``series``,
    and the skipped ones with their reasons."""
    series = [describe_volume(v) for v in study.volumes]
    return {
        **series[0],
        "series": series,
        "skipped_series": [
            {"series_uid": s.series_uid, "reason": s.reason, "path": s.path} for s in study.skipped
        ],
    }
