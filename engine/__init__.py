"""The engine, Qt-free, in the order a photo goes through it:

``ingest`` (read files, index folders, thumbnails) -> ``assess`` (score what would gain from
enhancement) -> ``enhance`` (recipes, the stage pipeline, renders, the editor) -> ``export``
(write enhanced copies). ``core`` is the plumbing they share; ``library`` is the read model
over the catalog (every question about photos, answered one way); ``cluster`` runs the
assess, enhance and export jobs on a Ray cluster. See docs/ARCHITECTURE.md.
"""
