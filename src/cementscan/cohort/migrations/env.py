"""Alembic environment: migrates the results database on the connection ResultsDatabase.open passes.

A new revision, for developers (SQLAlchemy models in cohort/schema.py changed)::

    from alembic import command
    from cementscan.cohort.database import alembic_config
    config = alembic_config("sqlite:///scratch.sqlite")
    command.upgrade(config, "head")  # before changing the models
    command.revision(config, "what changed", autogenerate=True, rev_id="0002")

then read and tidy the generated versions/rev0002_what_changed.py.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cementscan.cohort.schema import Base

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: later revisions copy-and-move tables instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the results database is migrated online only (ResultsDatabase.open)")
given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()
