"""The findings contract as typed, immutable dataclasses (DESIGN.md §4, schema cementscan.findings/1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cementscan.findings.vocabulary import SCHEMA_ID

Point = tuple[float, float, float]


@dataclass(frozen=True)
class InputRecord:
    """One analysed series (an ``inputs[]`` entry); findings refer to it by ``series_index``."""

    path: str
    format: str
    series_uid: str | None
    shape: tuple[int, int, int]
    spacing_mm: Point
    modality: str = "CT"
    contrast_phase: str = "unknown"
    coverage: tuple[str, ...] = ()
    orientation: str | None = None  # e.g. "LPS", "RAS": the axis-points-toward code
    slice_thickness_mm: float | None = None


@dataclass(frozen=True)
class SkippedRecord:
    series_uid: str
    reason: str


@dataclass(frozen=True)
class AnatomyRecord:
    levels: tuple[str, ...] = ()
    level_anchor: str = "none"
    level_confidence: float = 0.0


@dataclass(frozen=True)
class Finding:
    """One piece of cement in one compartment; ``id`` is its value in the cement label map."""

    id: int
    series_index: int
    category: str
    category_basis: str
    centroid_lps_mm: Point
    bbox_lps_mm: tuple[Point, Point]
    volume_ml: float
    length_mm: float
    max_diameter_mm: float
    shape: str
    mean_hu: float
    max_hu: float
    side: str
    confidence: float
    yeom_type: str | None = None
    level: str | None = None
    level_offset: int | None = None
    lung_zone: str | None = None
    lobe: str | None = None
    central: bool | None = None
    connected_to: int | None = None
    canal_compromise_pct: float | None = None


@dataclass(frozen=True)
class TreatedLevel:
    level: str | None
    cement_volume_ml: float
    level_offset: int | None = None


@dataclass(frozen=True)
class IvcSummary:
    assessable: bool
    present: bool | None
    cranial_extent_level: str | None = None
    caudal_extent_level: str | None = None
    length_mm: float | None = None
    extends_beyond_fov: bool | None = None


@dataclass(frozen=True)
class RegionSummary:
    assessable: bool
    present: bool | None


@dataclass(frozen=True)
class PceSummary:
    assessable: bool
    present: bool | None
    count: int = 0
    laterality: str = "none"
    predominance: str = "none"
    zone_predominance: str = "none"
    most_proximal: str = "none"
    max_length_mm: float | None = None


@dataclass(frozen=True)
class Summary:
    treated_levels: tuple[TreatedLevel, ...]
    leak_present: bool
    leaks: dict[str, int]
    ivc: IvcSummary
    right_heart: RegionSummary
    pce: PceSummary


@dataclass(frozen=True)
class Management:
    suggestion: str
    basis: tuple[str, ...] = ()
    inputs: dict[str, Any] = field(default_factory=dict)
    unconfirmed: tuple[
        str, ...
    ] = ()  # statements whose evidence clinical-evidence.md marks UNCONFIRMED


@dataclass(frozen=True)
class FindingsDocument:
    """The whole findings.json."""

    software: dict[str, str]
    inputs: tuple[InputRecord, ...]
    anatomy: AnatomyRecord
    findings: tuple[Finding, ...]
    summary: Summary
    management: Management
    skipped_series: tuple[SkippedRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)
    schema: str = SCHEMA_ID

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with the contract's key order (schema first)."""
        data = _lists(asdict(self))
        return {"schema": data.pop("schema"), **data}


def _lists(value: Any) -> Any:
    """asdict keeps tuples; JSON wants lists (and the schema checks arrays)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value
