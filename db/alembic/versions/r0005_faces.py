"""Schema version 5: faces (issue 16).

* ``photos.face_count``: how many faces the detector found (NULL = not examined yet).
* ``faces``: one row per face: box in the photo's frame (0..1), score, the content fingerprint
  and the detector version it was found with.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("photos", sa.Column("face_count", sa.Integer(), nullable=True))
    op.create_table(
        "faces",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("x0", sa.Float(), nullable=False),
        sa.Column("y0", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_faces_photo", "faces", ["photo_id"])
    op.execute(sa.text("UPDATE catalog_info SET value = '5' WHERE key = 'schema_version'"))


def downgrade() -> None:
    op.drop_index("ix_faces_photo", "faces")
    op.drop_table("faces")
    # in place (SQLite >= 3.35): a batch copy of photos would lose the ON DELETE rules of its
    # column-level foreign keys, which SQLite's reflection cannot read back
    op.drop_column("photos", "face_count")
    op.execute(sa.text("UPDATE catalog_info SET value = '4' WHERE key = 'schema_version'"))
