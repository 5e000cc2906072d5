"""Classify stage: candidate components (+ Anatomy) -> Findings in the contract's vocabulary."""

from cementscan.classify.placement import findings_from_candidates, shape_of, side_of

__all__ = ["findings_from_candidates", "shape_of", "side_of"]
