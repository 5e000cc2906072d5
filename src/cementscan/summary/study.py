"""The per-study summary of DESIGN.md §4, computed from the findings of every analysed series."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from cementscan.findings.model import (
    Finding,
    IvcSummary,
    PceSummary,
    RegionSummary,
    Summary,
    TreatedLevel,
)


def summarise(findings: Sequence[Finding], *, anatomy_available: bool) -> Summary:
    """Treated levels, leak counts and the venous-route items; regions stay not assessable
    (present null) until anatomy says which regions the scans covered."""
    volume_by_level: dict[str | None, float] = {}
    for f in findings:
        if f.category == "intravertebral":
            volume_by_level[f.level] = volume_by_level.get(f.level, 0.0) + f.volume_ml
    leaks = Counter(f.category for f in findings if f.category != "intravertebral")
    unassessed = not anatomy_available
    return Summary(
        treated_levels=tuple(
            TreatedLevel(level=level, cement_volume_ml=round(volume, 3))
            for level, volume in volume_by_level.items()
        ),
        leak_present=bool(leaks),
        leaks=dict(sorted(leaks.items())),
        ivc=IvcSummary(assessable=not unassessed, present=None if unassessed else False),
        right_heart=RegionSummary(assessable=not unassessed, present=None if unassessed else False),
        pce=PceSummary(assessable=not unassessed, present=None if unassessed else False),
    )
