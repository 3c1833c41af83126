"""Schema version 4: camera defects (issue 15).

* ``photos.camera_serial``: EXIF BodySerialNumber, so two bodies of one model are two series
  (NULL for photos indexed before; filled when a file is indexed again).
* ``photos.series_id``: the camera series the last detection put the photo in (indexed, no
  foreign key: see ``db/schema.py``).
* ``defect_series`` and ``defects``: the series examined and what was found in them; a defect
  can be dismissed by the user.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("photos", sa.Column("camera_serial", sa.String(64), nullable=True))
    op.add_column("photos", sa.Column("series_id", sa.Integer(), nullable=True))
    op.create_index("ix_photos_series", "photos", ["series_id"])
    op.create_table(
        "defect_series",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("camera", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("n_photos", sa.Integer(), nullable=False),
        sa.Column("members", sa.String(64), nullable=False),
        sa.Column("stats_json", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "defects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("series_id", sa.Integer(), sa.ForeignKey("defect_series.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("x0", sa.Float(), nullable=False),
        sa.Column("y0", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("photos", sa.Integer(), nullable=False),
        sa.Column("series_size", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("dismissed", sa.Boolean(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_defects_series", "defects", ["series_id", "dismissed"])
    op.execute(sa.text("UPDATE catalog_info SET value = '4' WHERE key = 'schema_version'"))


def downgrade() -> None:
    op.drop_index("ix_defects_series", "defects")
    op.drop_table("defects")
    op.drop_table("defect_series")
    op.drop_index("ix_photos_series", "photos")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("series_id")
        batch.drop_column("camera_serial")
    op.execute(sa.text("UPDATE catalog_info SET value = '3' WHERE key = 'schema_version'"))
