"""Report stage: findings.json + labels + CT -> HTML/PDF, key images, DICOM SEG/SR/SC, FHIR; issue #5."""
