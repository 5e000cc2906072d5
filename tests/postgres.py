"""A throwaway PostgreSQL server for the tests: Debian's initdb and pg_ctl on a free local port.

PostgreSQL refuses to run as root, so when the tests run as root (CI) the server runs as the
``postgres`` system user (``runuser``), with its data folder handed over to that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # the superuser role initdb creates, and the system user as root
COMMAND_TIMEOUT_S = 60


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that holds the server, or None."""
    found = [p.parent for p in POSTGRES_ROOT.glob("*/bin/postgres") if os.access(p, os.X_OK)]
    numbers = [int(m.group()) if (m := re.match(r"\d+", p.parent.name)) else 0 for p in found]
    return max(zip(numbers, found, strict=True))[1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """``start()`` initialises a data folder and starts the server; ``stop()`` removes both."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        # Not under pytest's tmp_path: that is private to the test user, the server is not.
        self.data_dir = Path(tempfile.mkdtemp(prefix="cementscan-pg-"))
        self._as_root = os.geteuid() == 0
        if self._as_root:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)

    def _run(self, program: str, args: Sequence[str]) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{tail}"
            )

    def start(self) -> None:
        data = str(self.data_dir / "data")
        self._run(
            "initdb", ["-D", data, "-U", SERVER_USER, "-A", "trust", "-E", "UTF8", "--no-sync"]
        )
        # Durability is not under test: no fsync makes start-up and commits fast.
        options = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.data_dir / "server.log")
        self._run("pg_ctl", ["-D", data, "-o", options, "-l", log, "-w", "-t", "30", "start"])

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"cementscan_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            if (self.data_dir / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", ["-D", str(self.data_dir / "data"), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)
