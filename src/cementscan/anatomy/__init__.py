"""Anatomy stage: CTVolume -> masks and landmarks (spine levels, lungs, venous route), classical or imported."""

from cementscan.anatomy.build import compute_anatomy
from cementscan.anatomy.model import Anatomy, LungInfo, Vertebra

__all__ = ["Anatomy", "LungInfo", "Vertebra", "compute_anatomy"]
