"""Cement stage: CTVolume (+ Anatomy when it has it) -> candidate cement components."""

from cementscan.cement.candidates import Candidate, Candidates, find_cement

__all__ = ["Candidate", "Candidates", "find_cement"]
