"""The catalog's Alembic migration environment (``env.py`` and ``versions/``).

Run by :mod:`db.migrations` at every catalog open, programmatically (no ``alembic.ini``). Each
revision also keeps ``catalog_info['schema_version']`` (an integer) current, so a photolift from
before Alembic refuses a catalog that a newer one migrated, with its own "newer photolift" message.
"""
