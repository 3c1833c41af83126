"""Plumbing every stage uses: progress, cancellation and time estimates (``jobs``), the shared
ONNX sessions and model folder (``runtime``), per-user folders (``paths``), the bounded disk
caches (``diskcache``) and the persistent batch queue (``batch``). Imports no stage."""
