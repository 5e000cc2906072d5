"""Shared test fixtures: where the real CT data lives, and running the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from postgres import PostgresServer, postgres_bin_dir

from cementscan.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (CI lays it there), or $CEMENTSCAN_SHARED_DATA."""
    env = os.environ.get("CEMENTSCAN_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"shared CT data not found at {path}")
    return path


@dataclass
class CliRun:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Run ``cementscan ARGS...`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> CliRun:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    """``cementscan ARGS`` in this process (module-scoped fixtures cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# --- cohort: a real findings.json and the results-database backends ----------------------------


@pytest.fixture(scope="session")
def all_leaks_document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """findings.json of ``analyze`` on a small all-leaks phantom (4 mm pixels, 5 mm slices): every
    summary part filled, findings of several categories; about 10 s, once per session."""
    from cementscan.pipeline import AnalysisOptions, analyze

    folder = tmp_path_factory.mktemp("all-leaks")
    args = ["--preset", "all-leaks", "--pixel-mm", "4", "--slice-mm", "5", "--no-png"]
    assert main(["phantom", "--out", str(folder), *args]) == 0
    document: dict[str, Any] = analyze([folder / "ct.nii.gz"], AnalysisOptions()).document.to_dict()
    return document


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a local port for the session; skipped only when Debian's server
    binaries are missing (tools/install-test-deps.sh installs them)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def results_db_url(request: pytest.FixtureRequest) -> str | None:
    """``--db`` for each backend: None (OUTDIR/cementscan.sqlite) or a new PostgreSQL database."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
