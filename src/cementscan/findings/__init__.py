"""The findings contract: vocabulary, dataclasses, JSON Schema and the findings.json reader/writer."""

from cementscan.findings.io import (
    findings_schema,
    read_findings,
    summary_from_dict,
    validate_findings,
    write_findings,
    write_json_atomic,
)
from cementscan.findings.model import (
    AnatomyRecord,
    Finding,
    FindingsDocument,
    InputRecord,
    IvcSummary,
    Management,
    PceSummary,
    RegionSummary,
    SkippedRecord,
    Summary,
    TreatedLevel,
)
from cementscan.findings.vocabulary import CATEGORIES, SCHEMA_ID

__all__ = [
    "CATEGORIES",
    "SCHEMA_ID",
    "AnatomyRecord",
    "Finding",
    "FindingsDocument",
    "InputRecord",
    "IvcSummary",
    "Management",
    "PceSummary",
    "RegionSummary",
    "SkippedRecord",
    "Summary",
    "TreatedLevel",
    "findings_schema",
    "read_findings",
    "summary_from_dict",
    "validate_findings",
    "write_findings",
    "write_json_atomic",
]
