"""Initial schema: patients, runs, studies, findings, summaries.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_patients_pseudonym")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("software_version", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.Column("batch_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.Text(), nullable=True),
        sa.Column("input_paths", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("software_version", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output_dir", sa.Text(), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("analysed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_studies_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_studies_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("key", name=op.f("uq_studies_key")),
    )
    op.create_index(op.f("ix_studies_patient_id"), "studies", ["patient_id"])
    op.create_index(op.f("ix_studies_run_id"), "studies", ["run_id"])
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=False),
        sa.Column("series_index", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("category_basis", sa.String(length=64), nullable=False),
        sa.Column("centroid_x_mm", sa.Float(), nullable=False),
        sa.Column("centroid_y_mm", sa.Float(), nullable=False),
        sa.Column("centroid_z_mm", sa.Float(), nullable=False),
        sa.Column("bbox_min_x_mm", sa.Float(), nullable=False),
        sa.Column("bbox_min_y_mm", sa.Float(), nullable=False),
        sa.Column("bbox_min_z_mm", sa.Float(), nullable=False),
        sa.Column("bbox_max_x_mm", sa.Float(), nullable=False),
        sa.Column("bbox_max_y_mm", sa.Float(), nullable=False),
        sa.Column("bbox_max_z_mm", sa.Float(), nullable=False),
        sa.Column("volume_ml", sa.Float(), nullable=False),
        sa.Column("length_mm", sa.Float(), nullable=False),
        sa.Column("max_diameter_mm", sa.Float(), nullable=False),
        sa.Column("shape", sa.String(length=64), nullable=False),
        sa.Column("mean_hu", sa.Float(), nullable=False),
        sa.Column("max_hu", sa.Float(), nullable=False),
        sa.Column("side", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("yeom_type", sa.String(length=64), nullable=True),
        sa.Column("level", sa.String(length=64), nullable=True),
        sa.Column("level_offset", sa.Integer(), nullable=True),
        sa.Column("lung_zone", sa.String(length=64), nullable=True),
        sa.Column("lobe", sa.Text(), nullable=True),
        sa.Column("central", sa.Boolean(), nullable=True),
        sa.Column("connected_to", sa.Integer(), nullable=True),
        sa.Column("canal_compromise_pct", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_findings_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
        sa.UniqueConstraint("study_id", "finding_id", name=op.f("uq_findings_study_id_finding_id")),
    )
    op.create_index(op.f("ix_findings_study_id"), "findings", ["study_id"])
    op.create_table(
        "summaries",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("leak_present", sa.Boolean(), nullable=False),
        sa.Column("leaks", sa.JSON(), nullable=False),
        sa.Column("treated_levels", sa.JSON(), nullable=False),
        sa.Column("treated_level_count", sa.Integer(), nullable=False),
        sa.Column("cement_volume_ml", sa.Float(), nullable=False),
        sa.Column("ivc_assessable", sa.Boolean(), nullable=False),
        sa.Column("ivc_present", sa.Boolean(), nullable=True),
        sa.Column("ivc_cranial_extent_level", sa.String(length=64), nullable=True),
        sa.Column("ivc_caudal_extent_level", sa.String(length=64), nullable=True),
        sa.Column("ivc_length_mm", sa.Float(), nullable=True),
        sa.Column("ivc_extends_beyond_fov", sa.Boolean(), nullable=True),
        sa.Column("right_heart_assessable", sa.Boolean(), nullable=False),
        sa.Column("right_heart_present", sa.Boolean(), nullable=True),
        sa.Column("pce_assessable", sa.Boolean(), nullable=False),
        sa.Column("pce_present", sa.Boolean(), nullable=True),
        sa.Column("pce_count", sa.Integer(), nullable=False),
        sa.Column("pce_laterality", sa.String(length=64), nullable=False),
        sa.Column("pce_predominance", sa.String(length=64), nullable=False),
        sa.Column("pce_zone_predominance", sa.String(length=64), nullable=False),
        sa.Column("pce_most_proximal", sa.String(length=64), nullable=False),
        sa.Column("pce_max_length_mm", sa.Float(), nullable=True),
        sa.Column("management_suggestion", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_summaries_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_summaries")),
    )


def downgrade() -> None:
    op.drop_table("summaries")
    op.drop_index(op.f("ix_findings_study_id"), table_name="findings")
    op.drop_table("findings")
    op.drop_index(op.f("ix_studies_run_id"), table_name="studies")
    op.drop_index(op.f("ix_studies_patient_id"), table_name="studies")
    op.drop_table("studies")
    op.drop_table("runs")
    op.drop_table("patients")
