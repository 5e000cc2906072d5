"""The exceptions that cross stage boundaries and the exit codes they map to (DESIGN.md §2)."""

from __future__ import annotations

from pathlib import Path


class CementscanError(Exception):
    """Base class: an internal error (exit code 1) unless a subclass says otherwise."""

    exit_code = 1


class InputError(CementscanError):
    """Bad input or usage (exit code 2): one line naming the file and the problem.

    >>> str(InputError("no DICOM files found", path="/data/empty"))
    '/data/empty: no DICOM files found'
    """

    exit_code = 2

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")
