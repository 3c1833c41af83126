"""Alembic environment of the catalog.

photolift runs migrations itself (:func:`db.migrations.upgrade`): it opens the connection, takes
the write lock, and hands the connection over in ``config.attributes['connection']``; the whole
upgrade then runs in that one transaction (stamp included), so a failed step leaves the catalog
as it was. Without a connection (a developer autogenerating a revision with the ``alembic``
command and ``sqlalchemy.url`` set, see :mod:`db.migrations`) it opens one from the URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from db.schema import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn: object) -> None:
    context.configure(
        connection=conn,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: batch mode copies the table
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("photolift migrations run online only (db.migrations.upgrade)")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no connection: run migrations through db.migrations.upgrade")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
