"""The results database's tables as SQLAlchemy models (one schema for SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Fixed constraint names, so that migrations can name what they alter on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Codes from a fixed vocabulary (a status, a category, a level); anything else is Text, as a
# length limit PostgreSQL enforces but SQLite ignores would make the backends differ.
CODE = String(64)


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC timestamp that reads back timezone-aware from both backends (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps in the results database must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Patient(Base):
    """A patient, known only by a keyed-hash pseudonym (see cohort.pseudonym)."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(CODE, unique=True)


class Run(Base):
    """One ``cementscan batch`` invocation."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    root: Mapped[str] = mapped_column(Text)
    software_version: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    host: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, int] | None] = mapped_column(JSON)
    batch_s: Mapped[float | None] = mapped_column(Float)


class Study(Base):
    """A study's latest outcome; ``document`` is the whole findings.json when it was analysed."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_uid: Mapped[str | None] = mapped_column(Text)
    input_paths: Mapped[list[str]] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(Text)
    software_version: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(CODE)
    error: Mapped[str | None] = mapped_column(Text)
    output_dir: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float] = mapped_column(Float)
    analysed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class FindingRow(Base):
    """One finding of findings.json; ``finding_id`` is its ``id`` (its label-map value)."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("study_id", "finding_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    finding_id: Mapped[int] = mapped_column(Integer)
    series_index: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(CODE)
    category_basis: Mapped[str] = mapped_column(CODE)
    centroid_x_mm: Mapped[float] = mapped_column(Float)
    centroid_y_mm: Mapped[float] = mapped_column(Float)
    centroid_z_mm: Mapped[float] = mapped_column(Float)
    bbox_min_x_mm: Mapped[float] = mapped_column(Float)
    bbox_min_y_mm: Mapped[float] = mapped_column(Float)
    bbox_min_z_mm: Mapped[float] = mapped_column(Float)
    bbox_max_x_mm: Mapped[float] = mapped_column(Float)
    bbox_max_y_mm: Mapped[float] = mapped_column(Float)
    bbox_max_z_mm: Mapped[float] = mapped_column(Float)
    volume_ml: Mapped[float] = mapped_column(Float)
    length_mm: Mapped[float] = mapped_column(Float)
    max_diameter_mm: Mapped[float] = mapped_column(Float)
    shape: Mapped[str] = mapped_column(CODE)
    mean_hu: Mapped[float] = mapped_column(Float)
    max_hu: Mapped[float] = mapped_column(Float)
    side: Mapped[str] = mapped_column(CODE)
    confidence: Mapped[float] = mapped_column(Float)
    yeom_type: Mapped[str | None] = mapped_column(CODE)
    level: Mapped[str | None] = mapped_column(CODE)
    level_offset: Mapped[int | None] = mapped_column(Integer)
    lung_zone: Mapped[str | None] = mapped_column(CODE)
    lobe: Mapped[str | None] = mapped_column(Text)
    central: Mapped[bool | None] = mapped_column(Boolean)
    connected_to: Mapped[int | None] = mapped_column(Integer)
    canal_compromise_pct: Mapped[float | None] = mapped_column(Float)


class SummaryRow(Base):
    """findings.json's ``summary`` (and the management suggestion) of one analysed study."""

    __tablename__ = "summaries"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    leak_present: Mapped[bool] = mapped_column(Boolean)
    leaks: Mapped[dict[str, int]] = mapped_column(JSON)
    treated_levels: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    treated_level_count: Mapped[int] = mapped_column(Integer)
    cement_volume_ml: Mapped[float] = mapped_column(Float)
    ivc_assessable: Mapped[bool] = mapped_column(Boolean)
    ivc_present: Mapped[bool | None] = mapped_column(Boolean)
    ivc_cranial_extent_level: Mapped[str | None] = mapped_column(CODE)
    ivc_caudal_extent_level: Mapped[str | None] = mapped_column(CODE)
    ivc_length_mm: Mapped[float | None] = mapped_column(Float)
    ivc_extends_beyond_fov: Mapped[bool | None] = mapped_column(Boolean)
    right_heart_assessable: Mapped[bool] = mapped_column(Boolean)
    right_heart_present: Mapped[bool | None] = mapped_column(Boolean)
    pce_assessable: Mapped[bool] = mapped_column(Boolean)
    pce_present: Mapped[bool | None] = mapped_column(Boolean)
    pce_count: Mapped[int] = mapped_column(Integer)
    pce_laterality: Mapped[str] = mapped_column(CODE)
    pce_predominance: Mapped[str] = mapped_column(CODE)
    pce_zone_predominance: Mapped[str] = mapped_column(CODE)
    pce_most_proximal: Mapped[str] = mapped_column(CODE)
    pce_max_length_mm: Mapped[float | None] = mapped_column(Float)
    management_suggestion: Mapped[str] = mapped_column(Text)
