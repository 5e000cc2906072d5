"""Synthetic torso CT phantoms with cement, look-alikes and ground truth (`cementscan phantom`)."""

from cementscan.synth.phantom import Phantom, PhantomSeries, make_phantom, write_phantom
from cementscan.synth.presets import PRESET_HELP, PRESETS, preset_spec
from cementscan.synth.spec import PhantomSpec

__all__ = [
    "PRESETS",
    "PRESET_HELP",
    "Phantom",
    "PhantomSeries",
    "PhantomSpec",
    "make_phantom",
    "preset_spec",
    "write_phantom",
]
