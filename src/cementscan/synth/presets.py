"""Named phantom specs: the reference case, a negative control, other leak sites and variants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cementscan.errors import InputError
from cementscan.synth.spec import PhantomSpec

_ALL_CONFOUNDERS: dict[str, Any] = {
    "aortic_calcifications": 6,
    "coronary_calcifications": 3,
    "granulomas": 3,
    "granulomas_beside_vessels": 2,
    "hilar_nodes": 2,
    "phleboliths": 3,
    "osteophyte_levels": ["L3", "L4"],
    "disc_calcifications": ["T8"],
    "pedicle_screws": [{"level": "L2"}],
    "surgical_clips": 3,
    "ivc_filter_level": "L3",
}


def _reference_case() -> dict[str, Any]:
    """case-report.txt: L4-L5 cement (right aspect), paravertebral vein -> IVC up to L1,
    multiple bilateral right-predominant lower-zone emboli; a lumbar CT and a chest CT."""
    return {
        "series": [
            {"z_from_level": "T11", "z_to_level": "S1", "description": "CT lumbar spine native",
             "slice_mm": 2.0, "kernel": "B30f"},
            {"z_from_level": "apex", "z_to_level": "L1", "description": "CT chest native",
             "slice_mm": 2.0, "kernel": "B30f"},
        ],
        "intravertebral": [
            {"level": "L4", "volume_ml": 3.5, "side": "right", "hu": 2200.0},
            {"level": "L5", "volume_ml": 4.0, "side": "right", "hu": 2200.0},
        ],
        "leaks": [{"category": "paravertebral_vein", "level": "L4", "side": "right", "ivc_to_level": "L1"}],
        "emboli": {"count": 7, "side": "bilateral", "right_fraction": 0.72, "zone": "lower",
                   "zone_fraction": 1.0, "shape": "mixed"},
        # Degenerative changes at L4, L5 and S1 (Figure 2 of the case).
        "confounders": {"osteophyte_levels": ["L4", "L5"], "aortic_calcifications": 3, "granulomas": 1},
    }  # fmt: skip


def _negative() -> dict[str, Any]:
    return {"confounders": {**_ALL_CONFOUNDERS, "pedicle_screws": [{"level": "L2"}, {"level": "L3"}],
                            "dense_venous_contrast": True, "contrast": "portal_venous"}}  # fmt: skip


def _thoracic_azygos() -> dict[str, Any]:
    return {
        "series": [{"z_from_level": "apex", "z_to_level": "L2", "description": "CT chest native"}],
        "intravertebral": [{"level": "T8", "volume_ml": 3.0, "side": "right"}],
        "leaks": [{"category": "azygos", "level": "T8", "side": "right", "length_mm": 35.0}],
        "emboli": {"count": 3, "side": "right", "zone": "diffuse", "shape": "mixed"},
        "confounders": {
            "aortic_calcifications": 4,
            "granulomas_beside_vessels": 2,
            "hilar_nodes": 2,
        },
    }


def _right_heart() -> dict[str, Any]:
    return {
        "series": [{"z_from_level": "apex", "z_to_level": "L3", "description": "CT chest"}],
        "intravertebral": [{"level": "T12", "volume_ml": 4.0}, {"level": "L1", "volume_ml": 4.5}],
        "leaks": [
            {
                "category": "paravertebral_vein",
                "level": "L1",
                "side": "right",
                "ivc_to_level": "T12",
            }
        ],
        "right_heart": {"chamber": "right_atrium", "shape": "linear", "length_mm": 24.0},
        "emboli": {"count": 4, "side": "bilateral", "central": 1, "zone": "diffuse"},
        "confounders": {"coronary_calcifications": 4},
    }


def _canal_leak() -> dict[str, Any]:
    return {
        "series": [{"z_from_level": "T10", "z_to_level": "S1", "description": "CT lumbar spine"}],
        "intravertebral": [{"level": "L1", "volume_ml": 4.0}, {"level": "L3", "volume_ml": 5.0, "side": "left"}],
        "leaks": [
            {"category": "epidural", "level": "L1", "side": "midline"},
            {"category": "foraminal", "level": "L3", "side": "left"},
            {"category": "disc", "level": "L3", "direction": "caudal"},
            {"category": "paravertebral_soft_tissue", "level": "L1", "side": "left"},
        ],
        "confounders": {"osteophyte_levels": ["L2"], "disc_calcifications": ["L4"],
                        "pedicle_screws": [{"level": "L4", "augmented": True}]},
    }  # fmt: skip


def _all_leaks() -> dict[str, Any]:
    return {
        "intravertebral": [{"level": "T7", "volume_ml": 3.0}, {"level": "L2", "volume_ml": 5.0},
                           {"level": "L4", "volume_ml": 4.0, "side": "right"}],
        "leaks": [
            {"category": "azygos", "level": "T7", "side": "right"},
            {"category": "disc", "level": "L2", "direction": "cranial"},
            {"category": "epidural", "level": "L2", "side": "midline"},
            {"category": "foraminal", "level": "L2", "side": "right"},
            {"category": "paravertebral_soft_tissue", "level": "L4", "side": "left"},
            {"category": "paravertebral_vein", "level": "L4", "side": "right", "ivc_to_level": "L2"},
        ],
        "emboli": {"count": 6, "side": "bilateral", "right_fraction": 0.5, "zone": "lower", "central": 1},
        "right_heart": {"chamber": "right_ventricle", "shape": "nodular", "length_mm": 8.0},
        "confounders": {**_ALL_CONFOUNDERS, "pedicle_screws": [{"level": "L3"}]},
    }  # fmt: skip


def _variant(**kw: Any) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        return {"series": [{"z_from_level": "apex", "z_to_level": "pelvis", "description": "CT torso"}],
                "intravertebral": [{"level": "L1", "volume_ml": 4.0}], **kw}  # fmt: skip

    return make


_FACTORIES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "reference-case": ("the case report: L4-L5, vein -> IVC to L1, bilateral R>L basal PCE; 2 series",
                       _reference_case),
    "negative": ("confounders only (calcifications, screws, clips, IVC filter, dense contrast), no cement",
                 _negative),
    "thoracic-azygos": ("T8 cement with a segmental-vein leak into the azygos, right emboli", _thoracic_azygos),
    "right-heart": ("T12/L1 cement, IVC cast to T12, linear cement in the right atrium, central embolus",
                    _right_heart),
    "canal-leak": ("epidural, foraminal, disc and soft-tissue leaks; cement-augmented screws", _canal_leak),
    "all-leaks": ("every leak category, IVC, right ventricle and emboli, all confounders", _all_leaks),
    "ribs-11": ("variant: 11 rib pairs (no rib on T12)", _variant(rib_pairs=11)),
    "ribs-13": ("variant: 13 rib pairs (a lumbar rib on L1)", _variant(rib_pairs=13)),
    "transitional": ("variant: sacralised L5 (transitional lumbosacral vertebra)", _variant(transitional=True)),
}  # fmt: skip


def _factory(name: str) -> Callable[..., PhantomSpec]:
    def make(seed: int = 0, slice_mm: float | None = None) -> PhantomSpec:
        return preset_spec(name, seed=seed, slice_mm=slice_mm)

    return make


PRESETS: dict[str, Callable[..., PhantomSpec]] = {name: _factory(name) for name in _FACTORIES}
PRESET_HELP: dict[str, str] = {name: text for name, (text, _) in _FACTORIES.items()}


def preset_spec(
    name: str, seed: int = 0, slice_mm: float | None = None, **overrides: Any
) -> PhantomSpec:
    """The spec of preset ``name``; ``slice_mm`` and other top-level fields override it."""
    if name not in _FACTORIES:
        raise InputError(f"unknown phantom preset {name!r} (known: {', '.join(_FACTORIES)})")
    data = _FACTORIES[name][1]()
    data.update(preset=name, seed=seed, **overrides)
    if slice_mm is not None:
        data["slice_mm"] = slice_mm
        for series in data.get("series", []):
            series["slice_mm"] = slice_mm
    return PhantomSpec.from_dict(data)
