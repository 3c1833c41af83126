"""Stage 1, ingest: read photo files (``imageio``: decoding, EXIF, orientation), walk library
folders into the catalog with content fingerprints (``indexer``) and make grid thumbnails
(``thumbnails``)."""
