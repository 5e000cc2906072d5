"""Cohort runs around the pipeline: batch analysis, the results database, statistics; issue #6."""
