"""Schema version 6: a JPEG's quality (from its quantisation table), read at indexing.

* ``photos.jpeg_quality``: the IJG quality of the file's last JPEG compression
  (``engine.ingest.imageio.jpeg_table_quality``); NULL for other formats and for photos indexed
  before this revision (filled when the file is next indexed as new or changed). The compression
  reason is not shown for JPEGs the enhancer would not deblock
  (``engine.enhance.levels.reasons_skipped``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("photos", sa.Column("jpeg_quality", sa.Integer(), nullable=True))
    op.execute(sa.text("UPDATE catalog_info SET value = '6' WHERE key = 'schema_version'"))


def downgrade() -> None:
    # in place (SQLite >= 3.35), as in 0005
    op.drop_column("photos", "jpeg_quality")
    op.execute(sa.text("UPDATE catalog_info SET value = '5' WHERE key = 'schema_version'"))
