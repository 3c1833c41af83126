"""The catalog schema, declared once (SQLAlchemy 2.0 typed style).

Tables follow docs/ARCHITECTURE.md. Sorting and filtering happen in SQL, so the columns the grid
sorts or filters by carry indexes. Paths are stored twice: ``path`` is a display string (always
valid UTF-8, undecodable bytes shown as ``\\xNN``) and ``path_bytes`` is the exact file-system name
(``os.fsencode``), which is what the indexer matches on, so non-UTF-8 file names round-trip.

Changing anything here needs an Alembic revision in ``db/alembic/versions/`` (see
:mod:`db.migrations`) that does the same DDL, bumps ``catalog_info['schema_version']`` and
``SCHEMA_VERSION``; ``tests/test_migrations.py`` fails while the two differ.
"""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The integer stamp of the newest revision (``catalog_info['schema_version']``): what the
# hand-written migrations of photolift <= 0.1 read, so they refuse catalogs migrated past them.
SCHEMA_VERSION = 6

# 64-bit integers: file sizes above 2 GiB and mtimes in ns. SQLite's INTEGER is 64 bit already
# (and what catalogs of schema version 1 and 2 declare); PostgreSQL's is 32 bit.
BigInt = BigInteger().with_variant(Integer(), "sqlite")

# photos.status values
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_MISSING = "missing"

# jobs.state values
JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_ERROR = "error"
JOB_CANCELLED = "cancelled"


class Base(DeclarativeBase):
    pass


class CatalogInfo(Base):
    """Key/value facts about the catalog: ``schema_version``, ``app_version`` and the like."""

    __tablename__ = "catalog_info"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Folder(Base):
    """A library root the user added (``photolift index DIR`` / open a folder)."""

    __tablename__ = "folders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    path_bytes: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime)
    last_scan_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="SET NULL"), default=None)
    path: Mapped[str] = mapped_column(Text)
    path_bytes: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    size: Mapped[int] = mapped_column(BigInt)
    mtime_ns: Mapped[int] = mapped_column(BigInt)
    # Fast content fingerprint (engine.ingest.indexer.fingerprint); NULL only when the file could not be read.
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    width: Mapped[int | None] = mapped_column(Integer, default=None)  # after EXIF orientation
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    orientation: Mapped[int | None] = mapped_column(Integer, default=None)  # EXIF 1..8
    format: Mapped[str | None] = mapped_column(String(16), default=None)  # JPEG, PNG, HEIF, RAW/NEF, ...
    camera_make: Mapped[str | None] = mapped_column(String(128), default=None)
    camera_model: Mapped[str | None] = mapped_column(String(128), default=None)
    lens: Mapped[str | None] = mapped_column(String(128), default=None)
    # EXIF BodySerialNumber (schema 4): tells two bodies of one model apart for camera defects
    camera_serial: Mapped[str | None] = mapped_column(String(64), default=None)
    captured_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    iso: Mapped[int | None] = mapped_column(Integer, default=None)
    exposure_time: Mapped[float | None] = mapped_column(Float, default=None)  # seconds
    f_number: Mapped[float | None] = mapped_column(Float, default=None)
    focal_length: Mapped[float | None] = mapped_column(Float, default=None)  # mm
    has_gps: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=STATUS_OK)
    # Human-readable reason when status == 'error'; error_code is a short machine code
    # (empty, not_image, truncated, bomb, permission, vanished, changing, unsupported, io, decode).
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)
    # A non-fatal problem with an otherwise good photo (e.g. unreadable EXIF).
    warning: Mapped[str | None] = mapped_column(Text, default=None)
    indexed_at: Mapped[datetime] = mapped_column(DateTime)
    current_recipe_id: Mapped[int | None] = mapped_column(
        ForeignKey("recipes.id", use_alter=True, name="fk_photos_current_recipe", ondelete="SET NULL"),
        default=None,
    )
    # The photo's current score (db.queries.refresh_current_scores keeps it; NULL = unscored for
    # its current content). Maintained so that the grid joins one row per photo by key.
    current_score_id: Mapped[int | None] = mapped_column(
        ForeignKey("scores.id", use_alter=True, name="fk_photos_current_score", ondelete="SET NULL"),
        default=None,
    )
    # The camera series (``defect_series.id``) the last defect detection put this photo in (schema
    # 4); NULL = not yet examined. No foreign key: series rows are kept by key, never deleted
    # while photos point at them, and a stale id only means "examine again".
    series_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # Faces found in the photo (schema 5; rows in ``faces``); NULL = not examined for faces yet.
    face_count: Mapped[int | None] = mapped_column(Integer, default=None)
    # A JPEG's quality read from its luminance quantisation table at indexing (schema 6;
    # ``engine.ingest.imageio.jpeg_table_quality``); NULL = not a JPEG, or indexed before schema 6.
    jpeg_quality: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (
        Index("ix_photos_folder", "folder_id"),
        Index("ix_photos_series", "series_id"),
        Index("ix_photos_current_score", "current_score_id"),
        Index("ix_photos_path", "path"),
        Index("ix_photos_fingerprint", "fingerprint"),
        Index("ix_photos_status", "status"),
        Index("ix_photos_captured_at", "captured_at"),
        Index("ix_photos_camera", "camera_model"),
    )

    @property
    def fs_path(self) -> str:
        """The path to open the file with (exact bytes, also for non-UTF-8 names); ``path`` is for display."""
        return os.fsdecode(self.path_bytes)


class Score(Base):
    """One assessment of one photo by one model version (and optional fine-tuned head)."""

    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))  # the content that was scored
    improvability: Mapped[float] = mapped_column(Float)
    quality: Mapped[float] = mapped_column(Float)
    severity_json: Mapped[str] = mapped_column(Text)  # {"noise": 0.3, ...}
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # float32 bytes
    recommended: Mapped[bool] = mapped_column(Boolean, default=False)
    head: Mapped[str] = mapped_column(String(64), default="")  # "" = the base model's own last layer
    scored_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("photo_id", "model", "model_version", "head", name="uq_scores_photo_model"),
        Index("ix_scores_photo_fp", "photo_id", "fingerprint", "id"),
        Index("ix_scores_improvability", "improvability"),
        Index("ix_scores_quality", "quality"),
    )


class Recipe(Base):
    """One version of the edit of a photo; the history is every row of that photo."""

    __tablename__ = "recipes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    recipe_json: Mapped[str] = mapped_column(Text)
    quality_before: Mapped[float | None] = mapped_column(Float, default=None)
    quality_after: Mapped[float | None] = mapped_column(Float, default=None)
    measured_gain: Mapped[float | None] = mapped_column(Float, default=None)
    status: Mapped[str] = mapped_column(String(16), default="ok")

    __table_args__ = (UniqueConstraint("photo_id", "version", name="uq_recipes_photo_version"),)


class Rating(Base):
    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    recipe_id: Mapped[int | None] = mapped_column(ForeignKey("recipes.id", ondelete="SET NULL"), default=None)
    rating: Mapped[int] = mapped_column(Integer)  # -1..2
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_ratings_photo", "photo_id"),)


class Head(Base):
    """A last layer fine-tuned on the user's ratings."""

    __tablename__ = "heads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    n_ratings: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class Job(Base):
    """The batch queue that survives a restart (index, enhance, export...)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), default=None)
    params_json: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16), default=JOB_QUEUED)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_jobs_state", "state", "kind"),)


class Export(Base):
    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    recipe_id: Mapped[int | None] = mapped_column(ForeignKey("recipes.id", ondelete="SET NULL"), default=None)
    out_path: Mapped[str] = mapped_column(Text)  # display string (valid UTF-8), like photos.path
    # the exact file-system name (os.fsencode); NULL in rows from schema version 1 (use out_path)
    out_path_bytes: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    format: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_exports_photo", "photo_id"),)


class DefectSeries(Base):
    """A camera series examined for fixed-position defects (engine.enhance.defects; schema 4).

    ``key`` is the series key (engine.enhance.defects.series_key: make, model, body serial, lens, sensor
    pixel size; the folder for photos without camera EXIF). ``members`` is a hash of the member
    photos' ids and fingerprints at detection time, so a detection is reused until the series
    changes. ``stats_json`` holds the per-series statistics the bias check compares."""

    __tablename__ = "defect_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    camera: Mapped[str] = mapped_column(Text)  # readable name: make model (serial), lens
    width: Mapped[int] = mapped_column(Integer)  # sensor frame (orientation 1)
    height: Mapped[int] = mapped_column(Integer)
    n_photos: Mapped[int] = mapped_column(Integer)
    members: Mapped[str] = mapped_column(String(64))
    stats_json: Mapped[str] = mapped_column(Text, default="{}")
    detected_at: Mapped[datetime] = mapped_column(DateTime)


class Defect(Base):
    """One detected defect of a camera series: kind, where (0..1 of the sensor frame), how many
    photos of the series show it, the confidence, and what the ``defects`` stage needs to correct
    it (``params_json``). The user can dismiss it (kept, so a new detection does not bring it
    back while it is the same defect)."""

    __tablename__ = "defects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("defect_series.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # dust, line, obstruction, hot_pixel, bias
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    photos: Mapped[int] = mapped_column(Integer)
    series_size: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    params_json: Mapped[str] = mapped_column(Text, default="{}")
    dismissed: Mapped[bool] = mapped_column(Boolean, default=False)
    detected_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_defects_series", "series_id", "dismissed"),)


class FaceBox(Base):
    """One face found in a photo by ``models/face_detector.onnx`` (engine.enhance.faces; schema 5).

    The box is in the photo's frame after EXIF orientation, 0..1; ``fingerprint`` is the content
    it was found in and ``model`` the detector's version, so a changed photo or a new detector
    means "detect again", not a migration. ``photos.face_count`` is the number of rows."""

    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    detected_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_faces_photo", "photo_id"),)
