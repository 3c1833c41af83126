"""Schema version 1: the catalog as the first released photolift created it.

Explicit DDL (not ``create_all``), so later revisions meet exactly the tables a version-1
catalog has. A catalog stamped ``schema_version = 1`` by the hand-written migrations of the
released code is stamped at this revision and upgraded from here.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# files are larger than 2 GiB and mtimes in ns exceed 32 bits; SQLite's INTEGER is 64 bit already
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "catalog_info",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "folders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("path_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.Column("last_scan_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("path_bytes"),
    )
    op.create_table(
        "heads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("n_ratings", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
    )
    # photos.current_recipe_id and recipes.photo_id refer to each other: SQLite takes the forward
    # reference inline (as create_all wrote it); other back ends get the constraint afterwards.
    recipe_fk = ([sa.ForeignKeyConstraint(["current_recipe_id"], ["recipes.id"], name="fk_photos_current_recipe",
                                          ondelete="SET NULL")] if sqlite else [])
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("folder_id", sa.Integer(), sa.ForeignKey("folders.id", ondelete="SET NULL"), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("path_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("size", BIG, nullable=False),
        sa.Column("mtime_ns", BIG, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("orientation", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(16), nullable=True),
        sa.Column("camera_make", sa.String(128), nullable=True),
        sa.Column("camera_model", sa.String(128), nullable=True),
        sa.Column("lens", sa.String(128), nullable=True),
        sa.Column("captured_at", sa.DateTime(), nullable=True),
        sa.Column("iso", sa.Integer(), nullable=True),
        sa.Column("exposure_time", sa.Float(), nullable=True),
        sa.Column("f_number", sa.Float(), nullable=True),
        sa.Column("focal_length", sa.Float(), nullable=True),
        sa.Column("has_gps", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("warning", sa.Text(), nullable=True),
        sa.Column("indexed_at", sa.DateTime(), nullable=False),
        sa.Column("current_recipe_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("path_bytes"),
        *recipe_fk,
    )
    for name, cols in (("ix_photos_folder", ["folder_id"]), ("ix_photos_path", ["path"]),
                       ("ix_photos_fingerprint", ["fingerprint"]), ("ix_photos_status", ["status"]),
                       ("ix_photos_captured_at", ["captured_at"]), ("ix_photos_camera", ["camera_model"])):
        op.create_index(name, "photos", cols)
    op.create_table(
        "scores",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("improvability", sa.Float(), nullable=False),
        sa.Column("quality", sa.Float(), nullable=False),
        sa.Column("severity_json", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("recommended", sa.Boolean(), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("photo_id", "model", "model_version", "head", name="uq_scores_photo_model"),
    )
    op.create_index("ix_scores_photo_fp", "scores", ["photo_id", "fingerprint", "id"])
    op.create_index("ix_scores_improvability", "scores", ["improvability"])
    op.create_index("ix_scores_quality", "scores", ["quality"])
    op.create_table(
        "recipes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("recipe_json", sa.Text(), nullable=False),
        sa.Column("quality_before", sa.Float(), nullable=True),
        sa.Column("quality_after", sa.Float(), nullable=True),
        sa.Column("measured_gain", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.UniqueConstraint("photo_id", "version", name="uq_recipes_photo_version"),
    )
    if not sqlite:
        op.create_foreign_key("fk_photos_current_recipe", "photos", "recipes", ["current_recipe_id"], ["id"],
                              ondelete="SET NULL")
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("recipe_id", sa.Integer(), sa.ForeignKey("recipes.id", ondelete="SET NULL"), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_ratings_photo", "ratings", ["photo_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=True),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_jobs_state", "jobs", ["state", "kind"])
    op.create_table(  # version 1: no out_path_bytes yet (revision 0002)
        "exports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("recipe_id", sa.Integer(), sa.ForeignKey("recipes.id", ondelete="SET NULL"), nullable=True),
        sa.Column("out_path", sa.Text(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_exports_photo", "exports", ["photo_id"])
    op.execute(sa.text("INSERT INTO catalog_info (key, value) VALUES ('schema_version', '1')"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_photos_current_recipe", "photos", type_="foreignkey")
    for table in ("exports", "jobs", "ratings", "recipes", "scores", "photos", "heads", "folders", "catalog_info"):
        op.drop_table(table)
