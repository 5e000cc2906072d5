"""Classify stage: candidate components (+ Anatomy) -> Findings in the contract's vocabulary."""

from cementscan.classify.classifier import classify_candidates
from cementscan.classify.placement import shape_of, side_of

__all__ = ["classify_candidates", "shape_of", "side_of"]
