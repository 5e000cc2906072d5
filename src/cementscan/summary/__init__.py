"""Summary stage: the Findings of every series of a study -> one per-study summary."""

from cementscan.summary.study import SeriesCoverage, duplicates, series_coverage, summarise

__all__ = ["SeriesCoverage", "duplicates", "series_coverage", "summarise"]
