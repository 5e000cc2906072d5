"""Alembic migrations of the results database; ResultsDatabase.open applies them."""
