"""Schema version 3: ``photos.current_score_id``, the maintained current score of each photo.

The current score of a photo is its newest ``scores`` row (highest id) whose fingerprint equals
the photo's and whose head is the base model's (``""``) or an active fine-tuned head
(:func:`db.queries.refresh_current_scores` keeps the column; this revision fills it once, with
the same rule written out here so that later changes to the code cannot change what this
migration did). Indexed, so the library joins one score per photo by key instead of running a
``max()`` per photo.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BACKFILL = """
UPDATE photos SET current_score_id = (
    SELECT max(s.id) FROM scores s
    WHERE s.photo_id = photos.id AND s.fingerprint = photos.fingerprint
      AND (s.head = '' OR s.head IN (SELECT CAST(h.id AS VARCHAR(64)) FROM heads h WHERE h.active))
)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a nullable column with a foreign key in place (no copy of a 100k-row table)
        op.execute(sa.text("ALTER TABLE photos ADD COLUMN current_score_id INTEGER CONSTRAINT fk_photos_current_score "
                           "REFERENCES scores (id) ON DELETE SET NULL"))
    else:
        # A catalog that photolift <= 0.1 made on PostgreSQL with create_all has 32-bit sizes and
        # mtimes (ns since 1970 do not fit): widen them (a no-op where revision 0001 made them).
        for col in ("size", "mtime_ns"):
            op.alter_column("photos", col, type_=sa.BigInteger(), existing_nullable=False)
        op.add_column("photos", sa.Column("current_score_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_photos_current_score", "photos", "scores", ["current_score_id"], ["id"],
                              ondelete="SET NULL")
    op.create_index("ix_photos_current_score", "photos", ["current_score_id"])
    op.execute(sa.text(BACKFILL))
    op.execute(sa.text("UPDATE catalog_info SET value = '3' WHERE key = 'schema_version'"))


def downgrade() -> None:
    op.drop_index("ix_photos_current_score", "photos")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_photos_current_score", "photos", type_="foreignkey")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("current_score_id")
    op.execute(sa.text("UPDATE catalog_info SET value = '2' WHERE key = 'schema_version'"))
