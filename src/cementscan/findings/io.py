"""Reading, validating and atomically writing findings.json against the shipped JSON Schema."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

from cementscan.atomic import atomic_path
from cementscan.errors import InputError
from cementscan.findings.model import (
    FindingsDocument,
    IvcSummary,
    PceSummary,
    RegionSummary,
    Summary,
    TreatedLevel,
)

SCHEMA_RESOURCE = "findings-1.schema.json"


@cache
def findings_schema() -> dict[str, Any]:
    """The JSON Schema of cementscan.findings/1, as shipped inside the package."""
    text = files("cementscan.findings").joinpath("schema", SCHEMA_RESOURCE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_findings(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when ``data`` breaks the contract."""
    validator = jsonschema.Draft202012Validator(findings_schema())
    validator.validate(data)


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write JSON under a temporary name in the target folder, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return Path(path)


def write_findings(document: FindingsDocument, path: str | Path) -> Path:
    """Validate against the schema, then write findings.json atomically."""
    data = document.to_dict()
    validate_findings(data)
    return write_json_atomic(data, path)


def read_findings(path: str | Path) -> dict[str, Any]:
    """Read and validate a findings.json; InputError when it is missing or breaks the contract."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read findings ({exc})", path) from None
    try:
        validate_findings(data)
    except jsonschema.ValidationError as exc:
        raise InputError(
            f"not a valid {data.get('schema', 'findings')} file: {exc.message}", path
        ) from None
    return dict(data)


def summary_from_dict(data: dict[str, Any]) -> Summary:
    """The Summary dataclass of a (validated) findings.json ``summary`` block."""
    return Summary(
        treated_levels=tuple(TreatedLevel(**t) for t in data["treated_levels"]),
        leak_present=bool(data["leak_present"]),
        leaks={str(k): int(v) for k, v in data["leaks"].items()},
        ivc=IvcSummary(**data["ivc"]),
        right_heart=RegionSummary(**data["right_heart"]),
        pce=PceSummary(**data["pce"]),
    )
