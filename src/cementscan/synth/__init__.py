"""Synthetic torso CT phantoms with cement, look-alikes and ground truth (`cementscan phantom`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cementscan.synth.phantom import Phantom, PhantomSeries, make_phantom, write_phantom
    from cementscan.synth.presets import PRESET_HELP, PRESETS, preset_spec
    from cementscan.synth.spec import PhantomSpec

# Resolved on first use (PEP 562): every CLI command reads the preset list for its help text,
# and the phantom builder's modules would otherwise load on every start, `analyze` included.
_MODULE_OF = {
    "Phantom": "phantom",
    "PhantomSeries": "phantom",
    "make_phantom": "phantom",
    "write_phantom": "phantom",
    "PRESET_HELP": "presets",
    "PRESETS": "presets",
    "preset_spec": "presets",
    "PhantomSpec": "spec",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


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
