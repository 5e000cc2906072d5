"""A batch run: discover the studies, skip the unchanged ones, run the rest, record every outcome."""

from __future__ import annotations

import csv
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

from cementscan import __version__
from cementscan.atomic import output_folder
from cementscan.clinical import parse_symptoms
from cementscan.cohort.discover import Discovery, discover_studies
from cementscan.cohort.records import STATUSES, StudyInput, StudyOutcome
from cementscan.cohort.runner import (
    StudyTask,
    connect_cluster,
    default_worker_count,
    marker_is_final,
    options_digest,
    outcome_from_marker,
    read_marker,
    remove_stale_staging,
    run_local,
    run_on_cluster,
)
from cementscan.errors import InputError
from cementscan.report.formats import ALWAYS

if TYPE_CHECKING:
    from distributed import Client

    from cementscan.cohort.database import ResultsDatabase

# Report rendering costs ~10 s a study: a batch writes the analysis itself unless asked.
BATCH_DEFAULT_FORMATS = ALWAYS
MAX_SKIPPED_SHOWN = 50
SYMPTOMS_COLUMN = "symptoms"
# Columns that name a study in --symptoms-csv, in the order they are matched.
STUDY_COLUMNS = {
    "key": ("study", "key", "study_key"),
    "study_uid": ("study_uid", "studyinstanceuid"),
    "patient_id": ("patient_id", "patientid"),
}
NO_SYMPTOMS = ("asymptomatic", "none")


@dataclass(frozen=True)
class BatchConfig:
    """What ``cementscan batch`` was asked to do."""

    root: Path
    out_dir: Path
    workers: int | None = None  # None: default_worker_count()
    cluster: str | None = None  # tcp://host:port of a Dask scheduler
    db_url: str | None = None
    symptoms_csv: Path | None = None
    timeout_s: float | None = None
    formats: tuple[str, ...] = BATCH_DEFAULT_FORMATS
    anatomy: str = "classical"
    progress: bool | None = None  # None: a bar when stderr is a terminal


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did: its id, counts by what happened and wall time."""

    run_id: int
    counts: dict[str, int]
    batch_s: float


@dataclass(frozen=True)
class _Plan:
    to_run: list[StudyTask]
    to_ingest: list[StudyTask]
    unchanged: list[StudyTask]


def run_batch(config: BatchConfig, out: TextIO | None = None) -> BatchResult:
    """Run a batch; failed studies are results (recorded with their error), not exceptions.

    Raises InputError for a bad root, output folder, option, symptoms file, database or cluster
    address, before any study is run.
    """
    clock = time.perf_counter()
    out = out or sys.stdout
    _check_config(config)
    symptoms = read_symptoms_csv(config.symptoms_csv) if config.symptoms_csv else None
    if not config.root.is_dir():
        raise InputError("not a folder" if config.root.exists() else "no such folder", config.root)
    client = connect_cluster(config.cluster) if config.cluster else None
    try:
        out_dir = output_folder(config.out_dir).resolve()
        if out_dir == config.root.resolve():
            raise InputError("the output folder must not be ROOT itself", config.out_dir)
        discovery = discover_studies(config.root, exclude=[out_dir])
        _print_discovery(discovery, out)
        if symptoms is not None:
            _print_unmatched_symptoms(symptoms, discovery, out)
        return _run(config, out_dir, discovery, symptoms, client, clock, out)
    finally:
        if client is not None:
            client.close()


def _check_config(config: BatchConfig) -> None:
    if config.workers is not None and config.workers < 1:
        raise InputError(f"--workers {config.workers} must be at least 1")
    if config.timeout_s is not None and not config.timeout_s > 0:
        raise InputError(f"--timeout {config.timeout_s:g} must be a positive number of seconds")
    if config.workers is not None and config.cluster:
        raise InputError("--workers is for local runs; a --cluster has its own workers")


def _run(
    config: BatchConfig,
    out_dir: Path,
    discovery: Discovery,
    symptoms: SymptomsTable | None,
    client: Client | None,
    clock: float,
    out: TextIO,
) -> BatchResult:
    from cementscan.cohort.database import ResultsDatabase
    from cementscan.cohort.pseudonym import load_or_create_secret, patient_pseudonym

    database = ResultsDatabase.open(config.db_url, out_dir)
    try:
        secret = load_or_create_secret(out_dir)
        workers = config.workers or default_worker_count()
        run_id = database.start_run(
            root=str(config.root.resolve()),
            software_version=__version__,
            options=_run_options(config, workers),
            host=socket.gethostname(),
        )
        remove_stale_staging(out_dir)
        plan = _plan(config, out_dir, discovery, symptoms, run_id, database)
        studies = {s.key: s for s in discovery.studies}
        counts: Counter[str] = Counter(
            found=len(discovery.studies),
            skipped_inputs=len(discovery.skipped),
            unchanged=len(plan.unchanged),
        )

        def record(outcome: StudyOutcome) -> None:
            study = studies[outcome.key]
            pseudonym = patient_pseudonym(study.patient_id, study.patient_hint, secret)
            database.record_outcome(run_id, study, outcome, pseudonym)
            counts[outcome.status] += 1

        for task in plan.to_ingest:
            marker = read_marker(task.study_dir)
            if marker is not None:  # read a moment ago; gone only if someone deleted it
                record(outcome_from_marker(marker, task.study_dir))
                counts["ingested"] += 1
        where = f"on the Dask cluster {config.cluster}" if client else f"with {workers} worker(s)"
        print(
            f"{len(plan.unchanged)} unchanged (skipped), {len(plan.to_ingest)} recorded from "
            f"existing outputs, {len(plan.to_run)} to analyse {where}",
            file=out,
            flush=True,
        )
        try:
            if plan.to_run:
                if client is not None:
                    outcomes = run_on_cluster(client, plan.to_run)
                else:
                    import cementscan.pipeline  # noqa: F401  once here, not in every child

                    outcomes = run_local(plan.to_run, workers)
                _consume(outcomes, len(plan.to_run), record, config.progress)
        except KeyboardInterrupt:
            counts["interrupted"] = 1
            raise
        finally:
            batch_s = time.perf_counter() - clock
            database.finish_run(run_id, counts=dict(counts), batch_s=round(batch_s, 3))
        done = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
        print(
            f"batch finished in {batch_s:.1f} s: {done or 'nothing analysed'}; "
            f"results in {out_dir}",
            file=out,
        )
        return BatchResult(run_id, dict(counts), batch_s)
    finally:
        database.close()


def _run_options(config: BatchConfig, workers: int) -> dict[str, object]:
    return {
        "workers": None if config.cluster else workers,
        "cluster": config.cluster,
        "timeout_s": config.timeout_s,
        "formats": list(config.formats),
        "anatomy": config.anatomy,
        "symptoms_csv": None if config.symptoms_csv is None else str(config.symptoms_csv),
    }


def _plan(
    config: BatchConfig,
    out_dir: Path,
    discovery: Discovery,
    symptoms: SymptomsTable | None,
    run_id: int,
    database: ResultsDatabase,
) -> _Plan:
    """Split the studies: unchanged (outputs and database agree), to ingest (outputs complete,
    database behind: the batch was killed after the study finished), and to run."""
    from cementscan.pipeline import AnalysisOptions

    base = AnalysisOptions(anatomy=config.anatomy, formats=config.formats)
    states = database.study_states()
    plan = _Plan([], [], [])
    for study in discovery.studies:
        options = base if symptoms is None else replace(base, symptoms=symptoms.lookup(study))
        digest = options_digest(options)
        task = StudyTask(study, str(out_dir), options, digest, run_id, config.timeout_s)
        marker = read_marker(task.study_dir)
        if not marker_is_final(marker, study, digest):
            plan.to_run.append(task)
        elif marker is not None and states.get(study.key) == (
            study.fingerprint,
            __version__,
            marker["status"],
        ):
            plan.unchanged.append(task)
        else:
            plan.to_ingest.append(task)
    # Largest first: the last studies to finish are then small ones, and workers idle less.
    plan.to_run.sort(key=lambda t: -discovery.input_bytes.get(t.study.key, 0))
    return plan


def _consume(
    outcomes: Generator[StudyOutcome, None, None],
    total: int,
    record: Callable[[StudyOutcome], None],
    progress: bool | None,
) -> None:
    """Record outcomes as they arrive, under a progress bar (done, failed, remaining, ETA)."""
    failed = 0
    bar = tqdm(total=total, unit="study", disable=None if progress is None else not progress)
    try:
        for n, outcome in enumerate(outcomes, start=1):
            record(outcome)
            if outcome.status != "ok":
                failed += 1
                bar.write(f"{outcome.key}: {outcome.status}: {outcome.error}", file=sys.stderr)
            bar.set_postfix(done=n - failed, failed=failed, remaining=total - n, refresh=False)
            bar.update()
    finally:
        bar.close()
        outcomes.close()  # kills the children / cancels the tasks still running


def _print_discovery(discovery: Discovery, out: TextIO) -> None:
    dicom = sum(1 for s in discovery.studies if s.key in discovery.dicom_series)
    series = sum(discovery.dicom_series.values())
    print(
        f"found {len(discovery.studies)} studies under {discovery.root}: {dicom} DICOM "
        f"({series} series), {len(discovery.studies) - dicom} volume files; "
        f"skipped {len(discovery.skipped)}",
        file=out,
    )
    for item in discovery.skipped[:MAX_SKIPPED_SHOWN]:
        print(f"  skipped {item.path}: {item.reason}", file=out)
    if len(discovery.skipped) > MAX_SKIPPED_SHOWN:
        print(f"  ... and {len(discovery.skipped) - MAX_SKIPPED_SHOWN} more skipped", file=out)


# --- --symptoms-csv -----------------------------------------------------------------------


@dataclass(frozen=True)
class SymptomsTable:
    """Symptoms by study key, StudyInstanceUID or PatientID (matched in that order)."""

    by_column: dict[str, dict[str, tuple[str, ...] | None]]

    def lookup(self, study: StudyInput) -> tuple[str, ...] | None:
        for column, value in self.matched(study):
            return self.by_column[column][value]
        return None

    def matched(self, study: StudyInput) -> list[tuple[str, str]]:
        """The (column, value) entries naming this study, best first."""
        named = (
            ("key", study.key),
            ("study_uid", study.study_uid),
            ("patient_id", study.patient_id),
        )
        return [(c, v) for c, v in named if v and v in self.by_column.get(c, {})]


def read_symptoms_csv(path: Path) -> SymptomsTable:
    """Read a CSV with a study column (study/key, study_uid or patient_id) and ``symptoms``
    (comma-separated, as ``--symptoms``; "asymptomatic" or "none" for none; blank: unknown)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise InputError(f"cannot read the symptoms file ({exc.strerror})", path) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"not a readable CSV file ({exc})", path) from None
    if not rows:
        raise InputError("empty symptoms file", path)
    header = [h.strip().lower() for h in rows[0]]
    if SYMPTOMS_COLUMN not in header:
        raise InputError(f"the symptoms file needs a {SYMPTOMS_COLUMN!r} column", path)
    columns = {
        name: header.index(alias)
        for name, aliases in STUDY_COLUMNS.items()
        for alias in aliases
        if alias in header
    }
    if not columns:
        names = ", ".join(a for aliases in STUDY_COLUMNS.values() for a in aliases[:1])
        raise InputError(f"the symptoms file needs a study column ({names})", path)
    symptoms_at = header.index(SYMPTOMS_COLUMN)
    by_column: dict[str, dict[str, tuple[str, ...] | None]] = {name: {} for name in columns}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        text = row[symptoms_at].strip() if symptoms_at < len(row) else ""
        try:
            if text.lower() in NO_SYMPTOMS:
                value: tuple[str, ...] | None = ()
            else:
                value = parse_symptoms(text) if text else None
        except InputError as exc:
            raise InputError(f"line {line}: {exc.problem}", path) from None
        for name, at in columns.items():
            ident = row[at].strip() if at < len(row) else ""
            if ident:
                by_column[name][ident] = value
    return SymptomsTable(by_column)


def _print_unmatched_symptoms(table: SymptomsTable, discovery: Discovery, out: TextIO) -> None:
    used: set[tuple[str, str]] = set()
    for study in discovery.studies:
        used.update(table.matched(study))
    rows = {(c, v) for c, values in table.by_column.items() for v in values}
    unmatched = rows - used
    if unmatched:
        shown = ", ".join(sorted(v for _, v in unmatched)[:5])
        print(
            f"symptoms file: no study matches {len(unmatched)} of its entries ({shown})", file=out
        )
