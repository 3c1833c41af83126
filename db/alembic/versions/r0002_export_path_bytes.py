"""Schema version 2: ``exports.out_path_bytes``, the exact file name of an export (non-UTF-8 names).

NULL in rows written before (readers fall back to ``out_path``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("exports", sa.Column("out_path_bytes", sa.LargeBinary(), nullable=True))
    op.execute(sa.text("UPDATE catalog_info SET value = '2' WHERE key = 'schema_version'"))


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("out_path_bytes")
    op.execute(sa.text("UPDATE catalog_info SET value = '1' WHERE key = 'schema_version'"))
