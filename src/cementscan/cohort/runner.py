"""Running studies of a batch: one forked child per study, locally in a pool or on a Dask cluster.

A study runs in a child process forked from a parent that has already imported the pipeline,
so a crash, an out-of-memory kill or a study that exceeds its time limit ends that child only
and is recorded like any other outcome. The child writes the study's outputs into a staging
folder, then its outcome marker, then renames the folder into OUTDIR/studies/<name>: a marker
in place means the study's outputs are complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cementscan import __version__
from cementscan.atomic import atomic_path
from cementscan.cohort.records import StudyInput, StudyOutcome
from cementscan.errors import InputError

if TYPE_CHECKING:
    from distributed import Client

    from cementscan.pipeline import AnalysisOptions

STUDIES_DIR = "studies"
MARKER_FILE = "outcome.json"
MARKER_SCHEMA = "cementscan.batch-outcome/1"
# Outcomes that the same input and software would repeat; the others (internal error, timeout,
# crash) may be transient (memory, a killed machine) and are retried by the next run.
FINAL_STATUSES = ("ok", "input_error")
# DESIGN.md §6: analyze peaks at <= 3 GB on a 512x512x300 CT.
PEAK_BYTES_PER_STUDY = 3 * 1024**3
CLUSTER_CONNECT_TIMEOUT_S = 10
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class StudyTask:
    """Everything a worker needs to run one study, picklable for a Dask worker."""

    study: StudyInput
    out_dir: str
    options: AnalysisOptions
    options_digest: str
    run_id: int
    timeout_s: float | None = None

    @property
    def study_dir(self) -> Path:
        return Path(self.out_dir) / STUDIES_DIR / study_dir_name(self.study.key)


def study_dir_name(key: str) -> str:
    """A folder name for a study key: readable, and unique through a short hash of the key."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:80] or "study"
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def options_digest(options: AnalysisOptions) -> str:
    """What of the options changes a study's outputs (formats, symptoms, anatomy source)."""
    chosen = {
        "anatomy": options.anatomy,
        "series_uid": options.series_uid,
        "symptoms": None if options.symptoms is None else sorted(options.symptoms),
        "formats": sorted(options.formats),
    }
    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


def default_worker_count() -> int:
    """All usable cores, fewer when memory cannot hold that many studies at their peak."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, _available_memory_bytes() // PEAK_BYTES_PER_STUDY))


def _available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


# --- markers ------------------------------------------------------------------------------


def read_marker(study_dir: Path) -> dict[str, Any] | None:
    """The outcome marker of a study folder, or None when absent or unreadable."""
    try:
        data = json.loads((study_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == MARKER_SCHEMA else None


def marker_is_final(marker: dict[str, Any] | None, study: StudyInput, digest: str) -> bool:
    """True when the marker is a final outcome of this very input, options and software."""
    return (
        marker is not None
        and marker.get("key") == study.key
        and marker.get("fingerprint") == study.fingerprint
        and marker.get("software_version") == __version__
        and marker.get("options_digest") == digest
        and marker.get("status") in FINAL_STATUSES
    )


def outcome_from_marker(marker: dict[str, Any], study_dir: Path) -> StudyOutcome:
    """The StudyOutcome a marker records (with findings.json's content when ok)."""
    document = None
    if marker["status"] == "ok":
        document = json.loads((study_dir / "findings.json").read_text(encoding="utf-8"))
    return StudyOutcome(
        key=marker["key"],
        status=marker["status"],
        fingerprint=marker["fingerprint"],
        software_version=marker["software_version"],
        duration_s=float(marker["duration_s"]),
        error=marker.get("error"),
        output_dir=str(study_dir),
        host=marker.get("host"),
        document=document,
    )


def _write_marker(
    folder: Path, task: StudyTask, status: str, duration_s: float, error: str | None
) -> None:
    marker = {
        "schema": MARKER_SCHEMA,
        "key": task.study.key,
        "status": status,
        "error": error,
        "fingerprint": task.study.fingerprint,
        "software_version": __version__,
        "options_digest": task.options_digest,
        "run_id": task.run_id,
        "duration_s": round(duration_s, 3),
        "host": socket.gethostname(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_path(folder / MARKER_FILE) as tmp:
        tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _publish(staging: Path, final: Path) -> None:
    """Replace the study folder by the staging folder (two renames; a crash in between leaves
    no marker, so the study is run again)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        final.rename(old)
    staging.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _record_failure(task: StudyTask, status: str, duration_s: float, error: str) -> StudyOutcome:
    """Publish a marker for a study whose child did not finish (timeout, crash)."""
    studies = task.study_dir.parent
    studies.mkdir(parents=True, exist_ok=True)
    _remove_staging(task)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{task.study_dir.name}-", dir=studies))
    _write_marker(staging, task, status, duration_s, error)
    _publish(staging, task.study_dir)
    return StudyOutcome(
        key=task.study.key,
        status=status,
        fingerprint=task.study.fingerprint,
        software_version=__version__,
        duration_s=round(duration_s, 3),
        error=error,
        output_dir=str(task.study_dir),
        host=socket.gethostname(),
    )


def _remove_staging(task: StudyTask) -> None:
    """The staging folder of a study whose child was killed while writing it."""
    for stale in task.study_dir.parent.glob(f".staging-{task.study_dir.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def remove_stale_staging(out_dir: Path) -> None:
    """Staging and replaced folders left by a run that was killed mid-study."""
    studies = out_dir / STUDIES_DIR
    if studies.is_dir():
        for entry in studies.iterdir():
            if entry.name.startswith((".staging-", ".old-")):
                shutil.rmtree(entry, ignore_errors=True)


# --- one study, in the child --------------------------------------------------------------


def run_study(task: StudyTask) -> None:
    """Analyse one study and publish its folder (outputs, then the marker), or its error."""
    from cementscan.pipeline import analyze, write_outputs

    final = task.study_dir
    studies = final.parent
    studies.mkdir(parents=True, exist_ok=True)
    # The previous outcome stops counting before anything else happens.
    (final / MARKER_FILE).unlink(missing_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{final.name}-", dir=studies))
    clock = time.perf_counter()
    status, error = "ok", None
    try:
        result = analyze(list(task.study.paths), task.options)
        write_outputs(result, staging, task.options.formats)
    except InputError as exc:
        status, error = "input_error", str(exc)
    except Exception as exc:  # an internal error of this study; the batch goes on
        status, error = "internal_error", f"{type(exc).__name__}: {exc}"
    _write_marker(staging, task, status, time.perf_counter() - clock, error)
    _publish(staging, final)


class ForkedStudy:
    """A study running in a forked child; ``sentinel`` becomes readable when the child exits."""

    def __init__(self, task: StudyTask) -> None:
        self.task = task
        self.started = time.monotonic()
        self.deadline = None if task.timeout_s is None else self.started + task.timeout_s
        parent_pid = os.getpid()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _child_main(task, parent_pid)
        os.close(write_fd)
        self.pid = pid
        # A pidfd cannot be inherited into the wrong place (a pipe's write end can, by another
        # thread's fork); the pipe serves where pidfds do not exist.
        if hasattr(os, "pidfd_open"):
            os.close(read_fd)
            self.sentinel = os.pidfd_open(pid)
        else:
            self.sentinel = read_fd

    def finish(self) -> StudyOutcome:
        """The outcome of a child that has exited."""
        _, status = os.waitpid(self.pid, 0)
        os.close(self.sentinel)
        elapsed_s = time.monotonic() - self.started
        marker = read_marker(self.task.study_dir)
        code = os.waitstatus_to_exitcode(status)
        if code == 0 and marker is not None and marker.get("run_id") == self.task.run_id:
            return outcome_from_marker(marker, self.task.study_dir)
        if code < 0:
            why = f"worker process killed by signal {signal.Signals(-code).name}"
            if -code == signal.SIGKILL:
                why += " (out of memory?)"
        else:
            why = f"worker process exited with code {code} without an outcome"
        return _record_failure(self.task, "crashed", elapsed_s, why)

    def kill(self) -> None:
        """End the child now (and reap it)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.sentinel)
        _remove_staging(self.task)

    def timed_out(self) -> StudyOutcome:
        """Kill a child that exceeded the time limit and record the timeout."""
        self.kill()
        elapsed_s = time.monotonic() - self.started
        return _record_failure(
            self.task, "timeout", elapsed_s, f"exceeded --timeout {self.task.timeout_s:g} s"
        )


def _child_main(task: StudyTask, parent_pid: int) -> None:
    code = 1
    try:
        _die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        warnings.simplefilter("ignore")  # numerical warnings of thousands of studies: noise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        run_study(task)
        code = 0
    except BaseException as exc:
        print(f"cementscan batch: {task.study.key}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        os._exit(code)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the child is killed when the batch process dies (a killed batch leaves no orphan
    writing into OUTDIR while the next run starts)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


# --- many studies -------------------------------------------------------------------------


def run_local(tasks: Sequence[StudyTask], workers: int) -> Generator[StudyOutcome, None, None]:
    """Run the tasks in up to ``workers`` children at a time; yield outcomes as they finish.

    Closing the iterator (Ctrl-C, an error in the consumer) kills the children still running.
    """
    pending = deque(tasks)
    running: dict[int, ForkedStudy] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                child = ForkedStudy(pending.popleft())
                running[child.sentinel] = child
            deadlines = [c.deadline for c in running.values() if c.deadline is not None]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = set(wait(list(running), timeout=wait_s))
            for sentinel in [s for s in running if s in ready]:
                yield running.pop(sentinel).finish()
            now = time.monotonic()
            for sentinel, child in list(running.items()):
                if child.deadline is not None and now >= child.deadline:
                    del running[sentinel]
                    yield child.timed_out()
    finally:
        for child in running.values():
            child.kill()


def run_isolated(task: StudyTask) -> StudyOutcome:
    """Run one study in a forked child and wait for it (the Dask task: a worker stays alive
    whatever the study does, and enforces the time limit itself)."""
    import cementscan.pipeline  # noqa: F401  imported once per worker, before forking

    child = ForkedStudy(task)
    timeout_s = None if child.deadline is None else max(0.0, child.deadline - time.monotonic())
    if wait([child.sentinel], timeout=timeout_s):
        return child.finish()
    return child.timed_out()


def connect_cluster(address: str) -> Client:
    """A client of an existing Dask scheduler; an unreachable address is an InputError."""
    from distributed import Client
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        # A malformed address fails inside the client's event loop, slowly: refuse it here.
        parse_host_port(parse_address(address)[1])
    except ValueError as exc:
        raise InputError(
            f"--cluster: not a scheduler address such as tcp://host:8786 ({exc})"
        ) from None
    try:
        return Client(address, timeout=CLUSTER_CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise InputError(
            f"--cluster: cannot connect to the Dask scheduler ({exc})", address
        ) from None


def run_on_cluster(
    client: Client, tasks: Sequence[StudyTask]
) -> Generator[StudyOutcome, None, None]:
    """Submit each task to the cluster; yield outcomes as they finish. A task whose worker died
    (KilledWorker) is recorded as crashed. Closing the iterator cancels what has not run."""
    from distributed import KilledWorker, as_completed

    futures = {}
    for task in tasks:
        future = client.submit(
            run_isolated,
            task,
            key=f"cementscan-study-{task.run_id}-{study_dir_name(task.study.key)}",
            pure=False,
            retries=0,
        )
        futures[future.key] = (future, task)
    try:
        for future in as_completed([f for f, _ in futures.values()], loop=client.loop):
            task = futures[future.key][1]
            try:
                yield future.result()
            except KilledWorker as exc:
                yield _record_failure(task, "crashed", 0.0, f"Dask worker died ({exc})")
            except Exception as exc:  # scheduler lost, deserialisation failed on the worker
                yield _record_failure(
                    task, "internal_error", 0.0, f"Dask: {type(exc).__name__}: {exc}"
                )
    finally:
        client.cancel([f for f, _ in futures.values()])
