"""Alembic revisions of the catalog, one file each (``rNNNN_<what>.py``; revision id ``NNNN``)."""
