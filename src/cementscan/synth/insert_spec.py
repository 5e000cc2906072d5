"""InsertSpec: which cement objects `cementscan insert` places into a real CT, read from JSON.

Format (every key but ``type`` is optional unless marked *required*)::

    {"seed": 1,                       # default RNG seed (--seed overrides)
     "noise_hu": null,                # added-noise sigma; null: estimated from the scan
     "psf_fwhm_mm": null,             # in-plane blur; null: max(0.9 mm, pixel)
     "objects": [
       {"type": "intravertebral", "level": "L3"*, "volume_ml": 4, "hu": 2200,
        "fill": "bipedicular|right|left"},
       {"type": "leak", "category": "disc|epidural|foraminal|paravertebral_soft_tissue|
                                     paravertebral_vein|azygos"*,
        "from_level": "L3"*, "side": "right|left|midline", "direction": "caudal|cranial",
        "volume_ml": 0.8, "length_mm": 30, "to": "ivc|plexus", "target_lps_mm": [x, y, z],
        "hu": ...},
       {"type": "ivc_cast", "from_level": "L3"*, "to_level": "L1"*, "radius_mm": 3.5},
       {"type": "emboli", "count": 6*, "side": "right|left|bilateral" or {"right": 4, "left": 2},
        "zone": "upper|middle|lower|any", "kinds": ["linear", "nodular"],
        "where": "lobes|central", "length_mm": [5, 20], "width_mm": [2, 3],
        "diameter_mm": [3, 5], "min_separation_mm": null},
       {"type": "right_heart", "shape": "nodular|linear", "size_mm": 8},
       {"type": "at", "center_lps_mm": [x, y, z]*, "category": "other", "radius_mm": 3}]}

A leak needs an ``intravertebral`` object at its ``from_level`` (cement leaks from a treated
body) and is connected to it. ``hu`` anywhere is the cement's CT number (1200-3000 HU by
default, drawn per object; UNCONFIRMED in the literature, clinical-evidence.md §4). Emboli
``where: lobes`` follow vessels inside the lung-lobe labels (peripheral); ``where: central``
follow the ``pulmonary_artery`` label (central). Errors are InputErrors naming the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cementscan.errors import InputError
from cementscan.synth.spec import CEMENT_HU_RANGE, LEAK_CATEGORIES, SIDES, ZONES, read_spec_json

LEVELS: tuple[str, ...] = (
    *(f"C{n}" for n in range(1, 8)),
    *(f"T{n}" for n in range(1, 13)),
    *(f"L{n}" for n in range(1, 6)),
    "S1",
)
CATEGORIES = (
    "intravertebral", "disc", "epidural", "foraminal", "paravertebral_soft_tissue",
    "paravertebral_vein", "azygos", "ivc", "svc", "right_heart", "pulmonary_artery", "other",
)  # fmt: skip
OBJECT_TYPES = ("intravertebral", "leak", "ivc_cast", "emboli", "right_heart", "at")
# Clinical ranges the brief fixes: intravertebral fills 2-8 mL; linear emboli 2-3 mm wide and
# 5-20 mm long; nodular emboli 3-5 mm; at most 40 emboli (Luetmer 2011: 1-12 per patient).
INTRAVERTEBRAL_ML = (2.0, 8.0)
EMBOLUS_LENGTH_MM = (5.0, 20.0)
EMBOLUS_WIDTH_MM = (2.0, 3.0)
EMBOLUS_DIAMETER_MM = (3.0, 5.0)
MAX_EMBOLI = 40


def _err(where: str, problem: str) -> InputError:
    return InputError(f"insert spec: {where}: {problem}")


def _number(where: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _err(where, f"{value!r} is not a number")
    if not lo <= float(value) <= hi:
        raise _err(where, f"{value} is outside {lo:g}..{hi:g}")
    return float(value)


def _choice(where: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _err(where, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _hu(where: str, value: object) -> float | None:
    return None if value is None else _number(where, value, CEMENT_HU_RANGE[0] * 0.5, 3071.0)


def _range(where: str, value: object, lo: float, hi: float) -> tuple[float, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = _number(where, value, lo, hi)
        return (v, v)
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _err(where, f"{value!r} is not a number or a [min, max] pair")
    a, b = (_number(where, v, lo, hi) for v in value)
    if a > b:
        raise _err(where, f"min {a:g} is greater than max {b:g}")
    return (a, b)


def _point(where: str, value: object) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise _err(where, f"{value!r} is not an [x, y, z] LPS-mm point")
    x, y, z = (_number(where, v, -5000.0, 5000.0) for v in value)
    return (x, y, z)


@dataclass
class ObjectSpec:
    """One validated spec object; the fields used depend on ``type``."""

    type: str
    index: int
    level: str | None = None
    volume_ml: float | None = None
    hu: float | None = None
    fill: str = "bipedicular"
    category: str | None = None
    side: str = "right"
    side_counts: dict[str, int] = field(default_factory=dict)
    direction: str = "caudal"
    length_mm: tuple[float, float] | None = None
    to: str = "ivc"
    target_lps_mm: tuple[float, float, float] | None = None
    to_level: str | None = None
    radius_mm: float | None = None
    count: int = 0
    zone: str = "any"
    kinds: tuple[str, ...] = ("linear", "nodular")
    where: str = "lobes"
    width_mm: tuple[float, float] = EMBOLUS_WIDTH_MM
    diameter_mm: tuple[float, float] = EMBOLUS_DIAMETER_MM
    min_separation_mm: float | None = None
    shape: str = "nodular"
    size_mm: float | None = None
    center_lps_mm: tuple[float, float, float] | None = None

    @property
    def where_text(self) -> str:
        return f"objects[{self.index}] ({self.type})"


_KEYS: dict[str, tuple[set[str], set[str]]] = {  # type -> (required, optional) keys
    "intravertebral": ({"level"}, {"volume_ml", "hu", "fill"}),
    "leak": (
        {"category", "from_level"},
        {"side", "direction", "volume_ml", "length_mm", "to", "target_lps_mm", "hu"},
    ),
    "ivc_cast": ({"from_level", "to_level"}, {"radius_mm", "hu"}),
    "emboli": (
        {"count"},
        {
            "side",
            "zone",
            "kinds",
            "where",
            "length_mm",
            "width_mm",
            "diameter_mm",
            "min_separation_mm",
            "hu",
        },
    ),
    "right_heart": (set(), {"shape", "size_mm", "hu"}),
    "at": ({"center_lps_mm"}, {"category", "radius_mm", "hu"}),
}


def _level(where: str, value: object) -> str:
    return _choice(where, value, LEVELS)


def _object(index: int, data: object) -> ObjectSpec:
    where = f"objects[{index}]"
    if not isinstance(data, dict):
        raise _err(where, f"expected an object, got {type(data).__name__}")
    kind = _choice(f"{where}.type", data.get("type"), OBJECT_TYPES)
    required, optional = _KEYS[kind]
    missing = sorted(required - set(data))
    if missing:
        raise _err(where, f"{kind} needs {', '.join(missing)}")
    unknown = sorted(set(data) - required - optional - {"type"})
    if unknown:
        known = ", ".join(sorted(required | optional))
        raise _err(where, f"unknown field(s) {', '.join(unknown)} for {kind} (known: {known})")
    spec = ObjectSpec(type=kind, index=index)
    where = f"{where} ({kind})"
    spec.hu = _hu(f"{where}.hu", data.get("hu"))
    if kind == "intravertebral":
        spec.level = _level(f"{where}.level", data["level"])
        spec.volume_ml = _number(
            f"{where}.volume_ml", data.get("volume_ml", 4.0), *INTRAVERTEBRAL_ML
        )
        spec.fill = _choice(f"{where}.fill", data.get("fill", "bipedicular"),
                            ("bipedicular", "right", "left"))  # fmt: skip
    elif kind == "leak":
        spec.category = _choice(f"{where}.category", data["category"], LEAK_CATEGORIES)
        spec.level = _level(f"{where}.from_level", data["from_level"])
        spec.side = _choice(f"{where}.side", data.get("side", "right"), SIDES)
        spec.direction = _choice(f"{where}.direction", data.get("direction", "caudal"),
                                 ("caudal", "cranial"))  # fmt: skip
        if "volume_ml" in data:
            spec.volume_ml = _number(f"{where}.volume_ml", data["volume_ml"], 0.02, 8.0)
        if "length_mm" in data:
            spec.length_mm = _range(f"{where}.length_mm", data["length_mm"], 5.0, 120.0)
        spec.to = _choice(f"{where}.to", data.get("to", "ivc"), ("ivc", "plexus"))
        if "target_lps_mm" in data:
            spec.target_lps_mm = _point(f"{where}.target_lps_mm", data["target_lps_mm"])
        if spec.category == "azygos" and spec.target_lps_mm is None:
            raise _err(where, "an azygos leak needs target_lps_mm (no azygos reference label)")
    elif kind == "ivc_cast":
        spec.level = _level(f"{where}.from_level", data["from_level"])
        spec.to_level = _level(f"{where}.to_level", data["to_level"])
        if LEVELS.index(spec.to_level) > LEVELS.index(spec.level):
            raise _err(f"{where}.to_level", f"{spec.to_level} is below from_level {spec.level}")
        if "radius_mm" in data:
            spec.radius_mm = _number(f"{where}.radius_mm", data["radius_mm"], 1.0, 8.0)
    elif kind == "emboli":
        _emboli(spec, data, where)
    elif kind == "right_heart":
        spec.shape = _choice(f"{where}.shape", data.get("shape", "nodular"), ("nodular", "linear"))
        default = 8.0 if spec.shape == "nodular" else 20.0
        spec.size_mm = _number(f"{where}.size_mm", data.get("size_mm", default), 3.0, 40.0)
    else:  # at
        spec.center_lps_mm = _point(f"{where}.center_lps_mm", data["center_lps_mm"])
        spec.category = _choice(f"{where}.category", data.get("category", "other"),
                                tuple(c for c in CATEGORIES if c != "intravertebral"))  # fmt: skip
        spec.radius_mm = _number(f"{where}.radius_mm", data.get("radius_mm", 3.0), 1.0, 20.0)
    return spec


def _emboli(spec: ObjectSpec, data: dict[str, Any], where: str) -> None:
    count = data["count"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_EMBOLI:
        raise _err(f"{where}.count", f"{count!r} is not an integer in 1..{MAX_EMBOLI}")
    spec.count = count
    side = data.get("side", "bilateral")
    if isinstance(side, dict):
        unknown = sorted(set(side) - {"right", "left"})
        if unknown:
            raise _err(f"{where}.side", f"unknown side(s) {', '.join(unknown)}")
        for k, v in side.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _err(f"{where}.side.{k}", f"{v!r} is not a non-negative integer")
        if sum(side.values()) != count:
            raise _err(f"{where}.side", f"counts add up to {sum(side.values())}, not count {count}")
        spec.side_counts = {"right": int(side.get("right", 0)), "left": int(side.get("left", 0))}
        spec.side = "bilateral"
    else:
        spec.side = _choice(f"{where}.side", side, ("right", "left", "bilateral"))
        right = {"right": count, "left": 0, "bilateral": (count + 1) // 2}[spec.side]
        spec.side_counts = {"right": right, "left": count - right}
    spec.zone = _choice(f"{where}.zone", data.get("zone", "any"), (*ZONES, "any"))
    kinds = data.get("kinds", ["linear", "nodular"])
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list) or not kinds:
        raise _err(f"{where}.kinds", f"{kinds!r} is not a list of linear/nodular")
    spec.kinds = tuple(_choice(f"{where}.kinds", k, ("linear", "nodular")) for k in kinds)
    spec.where = _choice(f"{where}.where", data.get("where", "lobes"), ("lobes", "central"))
    spec.length_mm = _range(f"{where}.length_mm", data.get("length_mm", list(EMBOLUS_LENGTH_MM)),
                            *EMBOLUS_LENGTH_MM)  # fmt: skip
    spec.width_mm = _range(f"{where}.width_mm", data.get("width_mm", list(EMBOLUS_WIDTH_MM)),
                           *EMBOLUS_WIDTH_MM)  # fmt: skip
    spec.diameter_mm = _range(
        f"{where}.diameter_mm", data.get("diameter_mm", list(EMBOLUS_DIAMETER_MM)),
        *EMBOLUS_DIAMETER_MM,
    )  # fmt: skip
    if data.get("min_separation_mm") is not None:
        spec.min_separation_mm = _number(
            f"{where}.min_separation_mm", data["min_separation_mm"], 0.0, 50.0
        )


@dataclass
class InsertSpec:
    """A validated insert spec: seed, rendering options and the objects in order."""

    seed: int
    objects: list[ObjectSpec]
    noise_hu: float | None = None
    psf_fwhm_mm: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object) -> InsertSpec:
        if not isinstance(data, dict):
            raise _err("top level", f"expected an object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"seed", "objects", "noise_hu", "psf_fwhm_mm", "comment"})
        if unknown:
            raise _err("top level", f"unknown field(s) {', '.join(unknown)} "
                       "(known: seed, objects, noise_hu, psf_fwhm_mm, comment)")  # fmt: skip
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise _err("seed", f"{seed!r} is not a non-negative integer")
        objects = data.get("objects")
        if not isinstance(objects, list) or not objects:
            raise _err("objects", "a non-empty list of cement objects is required")
        specs = [_object(n, o) for n, o in enumerate(objects)]
        treated = {o.level for o in specs if o.type == "intravertebral"}
        levels = [o.level for o in specs if o.type == "intravertebral"]
        if len(levels) != len(treated):
            raise _err("objects", "two intravertebral objects at the same level")
        for o in specs:
            if o.type == "leak" and o.level not in treated:
                raise _err(o.where_text, f"leaks from {o.level}, which has no intravertebral "
                           "object (cement leaks from a treated body)")  # fmt: skip
        noise = data.get("noise_hu")
        psf = data.get("psf_fwhm_mm")
        return cls(
            seed=seed,
            objects=specs,
            noise_hu=None if noise is None else _number("noise_hu", noise, 0.0, 200.0),
            psf_fwhm_mm=None if psf is None else _number("psf_fwhm_mm", psf, 0.0, 10.0),
            raw=json.loads(json.dumps(data)),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> InsertSpec:
        return read_spec_json(path, cls.from_dict, "spec")

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, **{k: v for k, v in self.raw.items() if k != "seed"}}


def describe(spec: ObjectSpec) -> dict[str, Any]:
    """The validated object as plain JSON (for debugging and reports)."""
    return {k: v for k, v in asdict(spec).items() if v not in (None, {}, ())}
