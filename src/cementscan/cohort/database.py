"""The results database of cohort runs (SQLite in OUTDIR or PostgreSQL): open, record, read back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, delete, event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from cementscan.cohort.records import STATUSES, StudyInput, StudyOutcome, StudyRecord
from cementscan.cohort.schema import FindingRow, Patient, Run, Study, SummaryRow
from cementscan.errors import InputError

DEFAULT_DB_FILE = "cementscan.sqlite"  # in OUTDIR when --db is not given
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
URL_FORMS = "sqlite:///FILE or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
# Serialises schema upgrades of one PostgreSQL database by several batch runs starting at once.
_MIGRATION_LOCK_KEY = 0x63656D656E74  # "cement"


def alembic_config(db_url: str | None = None) -> Config:
    """Alembic's configuration for the migrations shipped in the package (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "rev%%(rev)s_%%(slug)s")  # a valid module name
    if db_url is not None:
        config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    return config


def database_url(db_url: str | None, out_dir: Path) -> URL:
    """``--db`` as a SQLAlchemy URL: None is OUTDIR/cementscan.sqlite; PostgreSQL goes through
    psycopg 3 (the driver the package depends on)."""
    if db_url is None:
        return URL.create("sqlite", database=str(Path(out_dir) / DEFAULT_DB_FILE))
    try:
        url = make_url(db_url)
    except ArgumentError:
        # The text is not echoed: it may hold a password.
        raise InputError(f"--db: not a database URL (expected {URL_FORMS})") from None
    backend = url.get_backend_name()
    if backend == "postgresql" and url.drivername in ("postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and url.drivername == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise InputError("--db: an in-memory SQLite database would be lost; give a file")
        return url
    raise InputError(f"--db: unsupported database {url.drivername!r} (expected {URL_FORMS})")


class ResultsDatabase:
    """Studies, their findings and summaries, patients (by pseudonym) and batch runs.

    Each study's rows are written in one transaction (``record_outcome``), so a crash leaves a
    study either as it was or wholly replaced.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open_existing(cls, db_url: str | None, out_dir: Path) -> ResultsDatabase:
        """Open a database that ``cementscan batch`` wrote; a missing SQLite file is an
        InputError (opening it would create an empty database)."""
        url = database_url(db_url, out_dir)
        if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
            where = out_dir if db_url is None else url.database
            raise InputError(
                f"no results database ({Path(str(url.database)).name}); run `cementscan batch` "
                "into this folder first, or give --db",
                where,
            )
        return cls.open(db_url, out_dir)

    @classmethod
    def open(cls, db_url: str | None, out_dir: Path) -> ResultsDatabase:
        """Open (and create or upgrade) the database; a bad URL or an unreachable server is an
        InputError."""
        url = database_url(db_url, out_dir)
        # As the user wrote it (no driver), without the password.
        shown = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
        if url.get_backend_name() == "sqlite":
            try:
                Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the folder: {exc.strerror}", out_dir) from None
        engine = _create_engine(url)
        try:
            _upgrade_schema(engine)
        except DBAPIError as exc:
            engine.dispose()
            raise InputError(
                f"cannot open the results database: {_first_line(exc.orig)}", shown
            ) from None
        except CommandError as exc:
            engine.dispose()
            raise InputError(
                f"the results database has a schema this cementscan does not know ({exc}); "
                "was it written by a newer version?",
                shown,
            ) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for readers of the tables (export, statistics)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> ResultsDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- runs -----------------------------------------------------------------------------

    def start_run(
        self, *, root: str, software_version: str, options: dict[str, Any], host: str
    ) -> int:
        """Record the start of a batch run; returns its id."""
        with Session(self._engine) as session, session.begin():
            run = Run(
                started_at=datetime.now(UTC),
                root=root,
                software_version=software_version,
                options=options,
                host=host,
            )
            session.add(run)
            session.flush()
            return run.id

    def finish_run(self, run_id: int, *, counts: dict[str, int], batch_s: float) -> None:
        with Session(self._engine) as session, session.begin():
            run = session.get(Run, run_id)
            if run is None:
                raise ValueError(f"no run {run_id} in the results database")
            run.finished_at = datetime.now(UTC)
            run.counts = dict(counts)
            run.batch_s = batch_s

    # --- studies --------------------------------------------------------------------------

    def record_outcome(
        self, run_id: int, study: StudyInput, outcome: StudyOutcome, patient_pseudonym: str
    ) -> None:
        """Insert or update the study (unique by key) and replace its findings and summary with
        the outcome's, in one transaction. A failed outcome keeps no findings, only its error."""
        if outcome.key != study.key:
            raise ValueError(f"outcome of {outcome.key!r} recorded for study {study.key!r}")
        if outcome.status not in STATUSES:
            raise ValueError(f"unknown study status {outcome.status!r}")
        document = outcome.document if outcome.status == "ok" else None
        if outcome.status == "ok" and document is None:
            raise ValueError(f"study {study.key!r} is ok but has no findings document")
        with Session(self._engine) as session, session.begin():
            patient_id = _patient_id(session, patient_pseudonym)
            row = session.scalars(select(Study).where(Study.key == study.key)).one_or_none()
            if row is None:
                row = Study(key=study.key)
                session.add(row)
            else:
                # Delete before inserting: (study_id, finding_id) is unique.
                session.execute(delete(FindingRow).where(FindingRow.study_id == row.id))
                session.execute(delete(SummaryRow).where(SummaryRow.study_id == row.id))
            row.patient_id = patient_id
            row.study_uid = study.study_uid
            row.input_paths = list(study.paths)
            row.fingerprint = outcome.fingerprint
            row.software_version = outcome.software_version
            row.status = outcome.status
            row.error = outcome.error
            row.output_dir = outcome.output_dir
            row.host = outcome.host
            row.duration_s = outcome.duration_s
            row.analysed_at = datetime.now(UTC)
            row.run_id = run_id
            row.document = document
            session.flush()
            if document is not None:
                session.add_all(_finding_row(row.id, finding) for finding in document["findings"])
                session.add(_summary_row(row.id, document))

    def study_states(self) -> dict[str, tuple[str, str, str]]:
        """Study key -> (fingerprint, software_version, status) of its latest recorded outcome."""
        query = select(Study.key, Study.fingerprint, Study.software_version, Study.status)
        with Session(self._engine) as session:
            return {
                key: (fp, version, status) for key, fp, version, status in session.execute(query)
            }

    def load_cohort(self) -> list[StudyRecord]:
        """Every study by key, with its findings.json document when it was analysed."""
        query = select(Study, Patient.pseudonym).join(Patient).order_by(Study.key)
        with Session(self._engine) as session:
            return [
                StudyRecord(
                    key=study.key,
                    patient_pseudonym=pseudonym,
                    status=study.status,
                    error=study.error,
                    document=study.document,
                    extra={
                        "study_uid": study.study_uid,
                        "input_paths": study.input_paths,
                        "fingerprint": study.fingerprint,
                        "software_version": study.software_version,
                        "output_dir": study.output_dir,
                        "host": study.host,
                        "duration_s": study.duration_s,
                        "analysed_at": study.analysed_at,
                        "run_id": study.run_id,
                    },
                )
                for study, pseudonym in session.execute(query)
            ]


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, connect_args={"connect_timeout": 10})
    engine = create_engine(url, connect_args={"timeout": 60})

    # pysqlite commits before DDL and begins lazily; take over transactions so that a schema
    # upgrade is atomic too, and begin IMMEDIATE so that two writers wait for each other
    # (busy timeout) instead of failing when a read lock cannot be upgraded.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _upgrade_schema(engine: Engine) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _patient_id(session: Session, pseudonym: str) -> int:
    """The patient's row id, inserting the patient when new (another writer may be first)."""
    query = select(Patient.id).where(Patient.pseudonym == pseudonym)
    found = session.scalar(query)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            patient = Patient(pseudonym=pseudonym)
            session.add(patient)
        return patient.id
    except IntegrityError:
        return session.scalars(query).one()


def _finding_row(study_id: int, finding: dict[str, Any]) -> FindingRow:
    """One findings.json finding as a row (every contract field)."""
    (x, y, z) = finding["centroid_lps_mm"]
    ((x0, y0, z0), (x1, y1, z1)) = finding["bbox_lps_mm"]
    return FindingRow(
        study_id=study_id,
        finding_id=finding["id"],
        series_index=finding["series_index"],
        category=finding["category"],
        category_basis=finding["category_basis"],
        centroid_x_mm=x,
        centroid_y_mm=y,
        centroid_z_mm=z,
        bbox_min_x_mm=x0,
        bbox_min_y_mm=y0,
        bbox_min_z_mm=z0,
        bbox_max_x_mm=x1,
        bbox_max_y_mm=y1,
        bbox_max_z_mm=z1,
        volume_ml=finding["volume_ml"],
        length_mm=finding["length_mm"],
        max_diameter_mm=finding["max_diameter_mm"],
        shape=finding["shape"],
        mean_hu=finding["mean_hu"],
        max_hu=finding["max_hu"],
        side=finding["side"],
        confidence=finding["confidence"],
        yeom_type=finding.get("yeom_type"),
        level=finding.get("level"),
        level_offset=finding.get("level_offset"),
        lung_zone=finding.get("lung_zone"),
        lobe=finding.get("lobe"),
        central=finding.get("central"),
        connected_to=finding.get("connected_to"),
        canal_compromise_pct=finding.get("canal_compromise_pct"),
    )


def _summary_row(study_id: int, document: dict[str, Any]) -> SummaryRow:
    """findings.json's summary (and management suggestion) as one row."""
    summary = document["summary"]
    treated = summary["treated_levels"]
    ivc, right_heart, pce = summary["ivc"], summary["right_heart"], summary["pce"]
    return SummaryRow(
        study_id=study_id,
        leak_present=summary["leak_present"],
        leaks=summary["leaks"],
        treated_levels=treated,
        treated_level_count=len(treated),
        # Rounded: the per-level volumes have few decimals, their float sum has noise.
        cement_volume_ml=round(sum(t["cement_volume_ml"] for t in treated), 6),
        ivc_assessable=ivc["assessable"],
        ivc_present=ivc["present"],
        ivc_cranial_extent_level=ivc.get("cranial_extent_level"),
        ivc_caudal_extent_level=ivc.get("caudal_extent_level"),
        ivc_length_mm=ivc.get("length_mm"),
        ivc_extends_beyond_fov=ivc.get("extends_beyond_fov"),
        right_heart_assessable=right_heart["assessable"],
        right_heart_present=right_heart["present"],
        pce_assessable=pce["assessable"],
        pce_present=pce["present"],
        pce_count=pce["count"],
        pce_laterality=pce["laterality"],
        pce_predominance=pce["predominance"],
        pce_zone_predominance=pce["zone_predominance"],
        pce_most_proximal=pce["most_proximal"],
        pce_max_length_mm=pce.get("max_length_mm"),
        management_suggestion=document["management"]["suggestion"],
    )
