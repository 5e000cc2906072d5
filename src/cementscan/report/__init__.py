"""Report stage: findings.json + labels + CT -> HTML/PDF, key images, DICOM SEG/SR/SC, FHIR."""

from cementscan.report.formats import (
    DEFAULT_FORMATS,
    FORMATS,
    parse_formats,
    write_formats,
)

__all__ = ["DEFAULT_FORMATS", "FORMATS", "parse_formats", "write_formats"]
