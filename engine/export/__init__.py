"""Stage 4, export: write enhanced copies atomically, never overwriting, with the original's
metadata (``exporter``; EXIF for the copy: ``exifout``)."""
