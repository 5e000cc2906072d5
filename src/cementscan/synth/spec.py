"""PhantomSpec: what a synthetic phantom contains, read from JSON and validated (InputError)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cementscan.errors import InputError

T = TypeVar("T")

THORACIC = tuple(f"T{n}" for n in range(1, 13))
LUMBAR = tuple(f"L{n}" for n in range(1, 6))
LEVELS: tuple[str, ...] = (*THORACIC, *LUMBAR, "S1")
Z_LANDMARKS = ("apex", "pelvis")

LEAK_CATEGORIES = (
    "disc",
    "epidural",
    "foraminal",
    "paravertebral_soft_tissue",
    "paravertebral_vein",
    "azygos",
)
SIDES = ("right", "left", "midline")
ZONES = ("upper", "middle", "lower")
ORIENTATIONS_AXES = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}

# Cement HU is UNCONFIRMED in the literature (clinical-evidence.md §4: no measured HU of
# PMMA + BaSO4/ZrO2 at 120 kVp was found; "1,500-3,000 HU" is only a quoted figure), so it is
# a spec parameter with this default range; each object's value is drawn from it.
CEMENT_HU_RANGE = (1200.0, 3000.0)


def _err(where: str, problem: str) -> InputError:
    return InputError(f"phantom spec: {where}: {problem}")


def _check_level(where: str, level: object, allowed: tuple[str, ...] = LEVELS) -> str:
    if not isinstance(level, str) or level not in allowed:
        raise _err(where, f"unknown level {level!r} (expected one of {', '.join(allowed)})")
    return level


def _check_choice(where: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _err(where, f"{value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _check_range(where: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _err(where, f"{value!r} is not a number")
    if not lo <= float(value) <= hi:
        raise _err(where, f"{value} is outside {lo:g}..{hi:g}")
    return float(value)


def _check_hu(where: str, value: object) -> float:
    return _check_range(where, value, CEMENT_HU_RANGE[0] * 0.5, 3071.0)


def _build(cls: type, data: object, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise _err(where, f"expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise _err(
            where, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    try:
        obj = cls(**data)
    except TypeError as exc:  # a missing required field
        raise _err(where, str(exc)) from None
    obj.validate(where)
    return obj


def read_spec_json(path: str | Path, from_dict: Callable[[Any], T], what: str) -> T:
    """Read a JSON spec file and build it with ``from_dict``; every problem is an InputError
    naming the file (exit 2)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what} ({type(exc).__name__})", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not JSON (line {exc.lineno}: {exc.msg})", path=path) from None
    try:
        return from_dict(data)
    except InputError as exc:
        raise InputError(exc.problem, path=path) from None


@dataclass
class IntravertebralSpec:
    """Cement inside one vertebral body (the intended augmentation)."""

    level: str
    volume_ml: float = 4.0
    hu: float | None = None  # None: drawn from CEMENT_HU_RANGE
    side: str = "midline"  # where in the body the cement sits: right / left / midline (bipedicular)

    def validate(self, where: str) -> None:
        _check_level(f"{where}.level", self.level, (*THORACIC, *LUMBAR))
        self.volume_ml = _check_range(f"{where}.volume_ml", self.volume_ml, 2.0, 8.0)
        if self.hu is not None:
            self.hu = _check_hu(f"{where}.hu", self.hu)
        _check_choice(f"{where}.side", self.side, SIDES)


@dataclass
class LeakSpec:
    """Cement that left a treated body; ``ivc_to_level`` continues a vein leak as an IVC cast."""

    category: str
    level: str
    side: str = "right"
    volume_ml: float | None = None
    hu: float | None = None  # None: the treated body's cement HU
    direction: str = "caudal"  # disc leaks: into the disc below or above
    ivc_to_level: str | None = None  # paravertebral_vein (lumbar): cast in the IVC up to here
    length_mm: float | None = None  # vein leaks: tract length

    def validate(self, where: str) -> None:
        _check_choice(f"{where}.category", self.category, LEAK_CATEGORIES)
        _check_level(f"{where}.level", self.level, (*THORACIC, *LUMBAR))
        _check_choice(f"{where}.side", self.side, SIDES)
        _check_choice(f"{where}.direction", self.direction, ("caudal", "cranial"))
        if self.volume_ml is not None:
            self.volume_ml = _check_range(f"{where}.volume_ml", self.volume_ml, 0.02, 8.0)
        if self.hu is not None:
            self.hu = _check_hu(f"{where}.hu", self.hu)
        if self.length_mm is not None:
            self.length_mm = _check_range(f"{where}.length_mm", self.length_mm, 5.0, 80.0)
        if self.ivc_to_level is not None:
            if self.category != "paravertebral_vein":
                raise _err(
                    f"{where}.ivc_to_level", "only a paravertebral_vein leak reaches the IVC"
                )
            if not self.level.startswith("L"):
                raise _err(f"{where}.ivc_to_level", "IVC casts start from a lumbar level")
            _check_level(f"{where}.ivc_to_level", self.ivc_to_level, ("T11", "T12", *LUMBAR))
            if LEVELS.index(self.ivc_to_level) > LEVELS.index(self.level):
                raise _err(f"{where}.ivc_to_level", "must be at or above the leaking level")
        if self.category == "azygos" and not self.level.startswith("T"):
            raise _err(f"{where}.level", "azygos leaks come from thoracic levels")


@dataclass
class EmboliSpec:
    """Pulmonary cement emboli: count, sides, zones and shapes."""

    count: int = 0
    side: str = "bilateral"  # right / left / bilateral
    right_fraction: float = 0.5  # share of bilateral emboli in the right lung
    zone: str = "lower"  # upper / middle / lower / diffuse
    zone_fraction: float = 0.8  # share placed in ``zone`` (rest anywhere) unless diffuse
    shape: str = "mixed"  # linear / nodular / mixed
    central: int = 0  # how many sit in lobar or more proximal arteries
    hu: float | None = None
    min_separation_mm: float | None = None  # default: two slice thicknesses

    def validate(self, where: str) -> None:
        if (
            isinstance(self.count, bool)
            or not isinstance(self.count, int)
            or not 0 <= self.count <= 40
        ):
            raise _err(f"{where}.count", f"{self.count!r} is not an integer in 0..40")
        _check_choice(f"{where}.side", self.side, ("right", "left", "bilateral"))
        self.right_fraction = _check_range(f"{where}.right_fraction", self.right_fraction, 0, 1)
        _check_choice(f"{where}.zone", self.zone, (*ZONES, "diffuse"))
        self.zone_fraction = _check_range(f"{where}.zone_fraction", self.zone_fraction, 0, 1)
        _check_choice(f"{where}.shape", self.shape, ("linear", "nodular", "mixed"))
        if not isinstance(self.central, int) or not 0 <= self.central <= self.count:
            raise _err(f"{where}.central", f"{self.central!r} must be an integer in 0..count")
        if self.hu is not None:
            self.hu = _check_hu(f"{where}.hu", self.hu)
        if self.min_separation_mm is not None:
            self.min_separation_mm = _check_range(
                f"{where}.min_separation_mm", self.min_separation_mm, 0.0, 50.0
            )


@dataclass
class RightHeartSpec:
    """Cement in the right atrium or ventricle."""

    chamber: str = "right_atrium"
    shape: str = "linear"  # linear spike or nodular
    length_mm: float = 20.0
    hu: float | None = None

    def validate(self, where: str) -> None:
        _check_choice(f"{where}.chamber", self.chamber, ("right_atrium", "right_ventricle"))
        _check_choice(f"{where}.shape", self.shape, ("linear", "nodular"))
        self.length_mm = _check_range(f"{where}.length_mm", self.length_mm, 4.0, 60.0)
        if self.hu is not None:
            self.hu = _check_hu(f"{where}.hu", self.hu)


@dataclass
class ScrewSpec:
    """A pair of pedicle screws at one level; ``augmented`` adds cement around the tips."""

    level: str
    augmented: bool = False
    sides: tuple[str, ...] = ("right", "left")

    def validate(self, where: str) -> None:
        _check_level(f"{where}.level", self.level, (*THORACIC, *LUMBAR))
        if not isinstance(self.augmented, bool):
            raise _err(f"{where}.augmented", "must be true or false")
        self.sides = tuple(self.sides)
        for s in self.sides:
            _check_choice(f"{where}.sides", s, ("right", "left"))


@dataclass
class ConfounderSpec:
    """Look-alikes of cement that must not be reported as cement."""

    aortic_calcifications: int = 0
    coronary_calcifications: int = 0
    granulomas: int = 0
    granulomas_beside_vessels: int = 0
    hilar_nodes: int = 0
    phleboliths: int = 0
    osteophyte_levels: tuple[str, ...] = ()
    disc_calcifications: tuple[str, ...] = ()  # upper level of each disc, e.g. "L2" = L2-L3
    pedicle_screws: tuple[ScrewSpec, ...] = ()
    surgical_clips: int = 0
    ivc_filter_level: str | None = None
    contrast: str = "none"  # none / arterial / portal_venous
    dense_venous_contrast: bool = False  # undiluted contrast in the SVC (injection side)

    def validate(self, where: str) -> None:
        for name in (
            "aortic_calcifications",
            "coronary_calcifications",
            "granulomas",
            "granulomas_beside_vessels",
            "hilar_nodes",
            "phleboliths",
            "surgical_clips",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 30:
                raise _err(f"{where}.{name}", f"{value!r} is not an integer in 0..30")
        self.osteophyte_levels = tuple(
            _check_level(f"{where}.osteophyte_levels", lv, (*THORACIC, *LUMBAR))
            for lv in self.osteophyte_levels
        )
        self.disc_calcifications = tuple(
            _check_level(f"{where}.disc_calcifications", lv, (*THORACIC, *LUMBAR))
            for lv in self.disc_calcifications
        )
        self.pedicle_screws = tuple(
            s if isinstance(s, ScrewSpec) else _build(ScrewSpec, s, f"{where}.pedicle_screws[{n}]")
            for n, s in enumerate(self.pedicle_screws)
        )
        if self.ivc_filter_level is not None:
            _check_level(f"{where}.ivc_filter_level", self.ivc_filter_level, LUMBAR[:4])
        _check_choice(f"{where}.contrast", self.contrast, ("none", "arterial", "portal_venous"))
        if not isinstance(self.dense_venous_contrast, bool):
            raise _err(f"{where}.dense_venous_contrast", "must be true or false")


@dataclass
class SeriesSpec:
    """One CT series: craniocaudal extent (levels or 'apex'/'pelvis') and reconstruction."""

    z_from_level: str = "apex"
    z_to_level: str = "pelvis"
    description: str = "CT torso"
    slice_mm: float | None = None  # None: the phantom's slice_mm
    kernel: str = "B30f"

    def validate(self, where: str) -> None:
        for name in ("z_from_level", "z_to_level"):
            _check_level(f"{where}.{name}", getattr(self, name), (*LEVELS, *Z_LANDMARKS))
        if self.slice_mm is not None:
            self.slice_mm = _check_range(f"{where}.slice_mm", self.slice_mm, 1.0, 5.0)


@dataclass
class PhantomSpec:
    """Everything a phantom contains; ``from_dict`` / ``from_json`` validate with InputError."""

    preset: str | None = None
    seed: int = 0
    pixel_mm: float = 0.78125
    fov_mm: float = 400.0
    slice_mm: float = 2.0
    noise_hu: float = 12.0
    noise_smoothing: bool = True
    orientation: str = "LPS"
    series: tuple[SeriesSpec, ...] = (SeriesSpec(),)
    intravertebral: tuple[IntravertebralSpec, ...] = ()
    leaks: tuple[LeakSpec, ...] = ()
    emboli: EmboliSpec = field(default_factory=EmboliSpec)
    right_heart: RightHeartSpec | None = None
    confounders: ConfounderSpec = field(default_factory=ConfounderSpec)
    rib_pairs: int = 12
    transitional: bool = False  # sacralised L5: broad transverse processes fused to the sacrum

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhantomSpec:
        if not isinstance(data, dict):
            raise _err("spec", "the top level must be a JSON object")
        data = dict(data)
        data.pop("schema", None)
        if "series" in data:
            if not isinstance(data["series"], list) or not data["series"]:
                raise _err("series", "must be a non-empty list")
            data["series"] = tuple(
                _build(SeriesSpec, s, f"series[{n}]") for n, s in enumerate(data["series"])
            )
        for name, sub in (("intravertebral", IntravertebralSpec), ("leaks", LeakSpec)):
            if name in data:
                if not isinstance(data[name], list):
                    raise _err(name, "must be a list")
                data[name] = tuple(_build(sub, s, f"{name}[{n}]") for n, s in enumerate(data[name]))
        if "emboli" in data:
            data["emboli"] = _build(EmboliSpec, data["emboli"], "emboli")
        if data.get("right_heart") is not None:
            data["right_heart"] = _build(RightHeartSpec, data["right_heart"], "right_heart")
        if "confounders" in data:
            data["confounders"] = _build(ConfounderSpec, data["confounders"], "confounders")
        spec: PhantomSpec = _build(cls, data, "spec")
        return spec

    @classmethod
    def from_json(cls, path: str | Path) -> PhantomSpec:
        return read_spec_json(path, cls.from_dict, "phantom spec")

    def validate(self, where: str = "spec") -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise _err("seed", f"{self.seed!r} is not a non-negative integer")
        self.pixel_mm = _check_range("pixel_mm", self.pixel_mm, 0.3, 4.0)
        self.fov_mm = _check_range("fov_mm", self.fov_mm, 340.0, 600.0)
        self.slice_mm = _check_range("slice_mm", self.slice_mm, 1.0, 5.0)
        self.noise_hu = _check_range("noise_hu", self.noise_hu, 0.0, 200.0)
        if not isinstance(self.noise_smoothing, bool):
            raise _err("noise_smoothing", "must be true or false")
        code = self.orientation
        if (
            not isinstance(code, str)
            or len(code) != 3
            or any(c not in ORIENTATIONS_AXES for c in code)
            or sorted(ORIENTATIONS_AXES[c] for c in code) != [0, 1, 2]
        ):
            raise _err(
                "orientation", f"{code!r} is not a 3-letter orientation code such as LPS or RAS"
            )
        self.series = tuple(self.series)
        self.intravertebral = tuple(self.intravertebral)
        self.leaks = tuple(self.leaks)
        if self.rib_pairs not in (11, 12, 13):
            raise _err("rib_pairs", f"{self.rib_pairs!r} is not 11, 12 or 13")
        if not isinstance(self.transitional, bool):
            raise _err("transitional", "must be true or false")
        treated = [c.level for c in self.intravertebral]
        if len(set(treated)) != len(treated):
            raise _err("intravertebral", "a level is listed twice")
        for n, leak in enumerate(self.leaks):
            if leak.level not in treated:
                raise _err(
                    f"leaks[{n}].level", f"{leak.level} is not a treated (intravertebral) level"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` reads back to an equal spec."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
