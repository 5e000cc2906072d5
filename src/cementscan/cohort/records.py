"""The plain records that flow between batch discovery, the runner, the database and statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A study's outcome in a batch run. "input_error" is the exit-code-2 class (bad input, said in
# one line); "internal_error" is an exception in cementscan (exit code 1); "timeout" and
# "crashed" are a worker that exceeded --timeout or died (killed, out of memory, segfault).
STATUSES = ("ok", "input_error", "internal_error", "timeout", "crashed")


@dataclass(frozen=True)
class StudyInput:
    """One study found under the batch root: what to pass to ``analyze`` and how to know it again.

    ``key`` is stable across runs (the study's path relative to the root, or its
    StudyInstanceUID when one folder holds it); ``fingerprint`` changes when any input file
    changes (relative paths, sizes and modification times); ``patient_id`` is the DICOM
    PatientID ("" when blank or not DICOM) and ``patient_hint`` what identifies the patient when
    it is blank (PatientName and BirthDate, else the study key).
    """

    key: str
    paths: tuple[str, ...]
    fingerprint: str
    patient_id: str = ""
    patient_hint: str = ""
    study_uid: str | None = None


@dataclass(frozen=True)
class StudyOutcome:
    """What running one study produced; ``document`` is findings.json's content when ok."""

    key: str
    status: str
    fingerprint: str
    software_version: str
    duration_s: float
    error: str | None = None
    output_dir: str | None = None
    host: str | None = None
    document: dict[str, Any] | None = None


@dataclass(frozen=True)
class StudyRecord:
    """One study as the cohort statistics see it (from the results database)."""

    key: str
    patient_pseudonym: str
    status: str
    error: str | None = None
    document: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
