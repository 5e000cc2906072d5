"""Summary stage: the Findings of every series of a study -> one per-study summary."""

from cementscan.summary.study import summarise

__all__ = ["summarise"]
