"""Versioned edit recipes: the non-destructive record of an enhancement.

A recipe is a JSON object::

    {"schema": 1, "app": "photolift 0.1.0", "strength": 1.0,
     "stages": [{"name": "restore", "strength": 1.0, "model": "restorer", "model_version": "3f2a...",
                 "params": {}},
                {"name": "tone", "strength": 1.0, "model": "tone", "model_version": "91bc...",
                 "params": {"exposure": 0.2, ...}}]}

Stages run in the listed order. ``source`` (optional) is the content fingerprint of the original
the recipe was made and measured on; export refuses a recipe whose original has changed since. ``model_version`` is the sha256 prefix of the model file
(``engine.core.runtime.model_version``), so a recipe names the exact network that made it. A stage
whose parameters were *predicted* by a model (``tone``) replays from its stored parameters and
does not need that model again; a stage that *is* a network (``restore``) needs the exact file.
:func:`find_model` looks for it among ``models/<name>*.onnx``; when it is gone the render fails
with :class:`ModelGone`, which says which version is missing and which one is installed.

``schema`` is the version of this JSON layout. Readers accept every schema up to
``RECIPE_SCHEMA``; a recipe written by a newer photolift is refused with a clear message
rather than misread. The canonical form (sorted keys, no spaces) is what :func:`recipe_hash`
hashes, so the render cache key changes whenever any parameter does.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECIPE_SCHEMA = 1
APP_NAME = "photolift"


def app_version() -> str:
    """The installed photolift version (``0.1.0`` from a source checkout without metadata)."""
    try:
        from importlib.metadata import version

        return version("photolift")
    except Exception:
        return "0.1.0"


class RecipeError(ValueError):
    """A recipe that cannot be read (malformed JSON, unknown stage, newer schema)."""


class ModelGone(RuntimeError):
    """The model a recipe was made with is no longer installed."""

    def __init__(self, stage: str, model: str, version: str, installed: list[str]) -> None:
        have = ", ".join(installed) if installed else "none"
        super().__init__(
            f"this edit's {stage!r} stage was made with model {model!r} version {version}, which is no "
            f"longer installed (installed {model} versions: {have}); enhance the photo again to use the "
            f"current model"
        )
        self.stage = stage
        self.model = model
        self.version = version
        self.installed = installed


@dataclass(frozen=True)
class StageSpec:
    """One stage of a recipe."""

    name: str
    strength: float = 1.0
    model: str | None = None
    model_version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strength": float(self.strength),
            "model": self.model,
            "model_version": self.model_version,
            "params": self.params,
        }


@dataclass(frozen=True)
class Recipe:
    """An ordered list of stages plus the overall strength the user asked for."""

    stages: tuple[StageSpec, ...]
    strength: float = 1.0
    schema: int = RECIPE_SCHEMA
    app: str = ""
    # content fingerprint of the original the recipe was made and measured on ("" = not recorded)
    source: str = ""

    @property
    def is_identity(self) -> bool:
        """True for the empty recipe (the original pixels; what a revert records)."""
        return not self.stages

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "app": self.app or f"{APP_NAME} {app_version()}",
            **({"source": self.source} if self.source else {}),
            "strength": float(self.strength),
            "stages": [s.to_dict() for s in self.stages],
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, compact): stable across runs, safe to hash."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def summary(self) -> str:
        """A short human-readable line, e.g. ``restore(3f2a9c1e) + tone`` at strength 0.8."""
        if not self.stages:
            return "original"
        parts = []
        for s in self.stages:
            tag = f"{s.name}({s.model_version[:8]})" if s.model_version else s.name
            if abs(s.strength - 1.0) > 1e-9:
                tag += f"x{s.strength:g}"
            check = s.params.get("quality_check") if isinstance(s.params, Mapping) else None
            if isinstance(check, Mapping) and check.get("kept") is False:
                tag += " (left as is: no gain by the quality model)"
            parts.append(tag)
        return " + ".join(parts)


def _float(v: Any, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"{what} must be a number, got {v!r}") from e
    if not (f == f) or f in (float("inf"), float("-inf")):
        raise RecipeError(f"{what} must be finite, got {v!r}")
    return f


def from_dict(d: Any) -> Recipe:
    """Validate and build a recipe; raises :class:`RecipeError` with the reason."""
    if not isinstance(d, dict):
        raise RecipeError("a recipe must be a JSON object")
    schema = d.get("schema")
    if not isinstance(schema, int) or schema < 1:
        raise RecipeError(f"recipe has no valid schema version ({schema!r})")
    if schema > RECIPE_SCHEMA:
        raise RecipeError(
            f"recipe schema {schema} was written by a newer photolift (this one reads up to "
            f"{RECIPE_SCHEMA}); update photolift to render it"
        )
    stages_in = d.get("stages")
    if not isinstance(stages_in, list):
        raise RecipeError("recipe 'stages' must be a list")
    stages: list[StageSpec] = []
    for i, s in enumerate(stages_in):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise RecipeError(f"recipe stage {i} has no name")
        params = s.get("params")
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise RecipeError(f"recipe stage {s['name']!r}: params must be an object")
        model = s.get("model")
        mver = s.get("model_version")
        stages.append(
            StageSpec(
                name=s["name"],
                strength=_float(s.get("strength", 1.0), f"stage {s['name']!r} strength"),
                model=model if isinstance(model, str) else None,
                model_version=mver if isinstance(mver, str) else None,
                params=params,
            )
        )
    return Recipe(
        stages=tuple(stages),
        strength=_float(d.get("strength", 1.0), "recipe strength"),
        schema=schema,
        app=str(d.get("app") or ""),
        source=str(d.get("source") or ""),
    )


def from_json(text: str) -> Recipe:
    try:
        d = json.loads(text)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"recipe is not valid JSON: {e}") from e
    return from_dict(d)


def recipe_hash(recipe: Recipe) -> str:
    """sha256 of the canonical JSON, minus the ``app`` field (the same edit made by two
    releases renders the same pixels when the models and parameters are the same)."""
    d = recipe.to_dict()
    d.pop("app", None)
    d.pop("source", None)  # the content is in the cache key already
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


# -- model files --------------------------------------------------------------------------------

_version_cache: dict[tuple[str, int, int], str] = {}
_version_lock = threading.Lock()


def file_version(path: Path) -> str:
    """``engine.core.runtime.model_version`` memoised on (path, size, mtime): hashing a model file
    each time a recipe is checked would cost more than the check."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _version_lock:
        v = _version_cache.get(key)
    if v is None:
        from engine.core.runtime import model_version

        v = model_version(path)
        with _version_lock:
            _version_cache[key] = v
    return v


def _same_version(a: str, b: str) -> bool:
    n = min(len(a), len(b))
    return n >= 8 and a[:n] == b[:n]


def installed_models(model: str, models_dir: Path | None = None) -> list[tuple[Path, str]]:
    """``(path, version)`` of every ``<model>*.onnx`` in the models folder; the plain
    ``<model>.onnx`` (the current one) first."""
    if models_dir is None:
        from engine.core.runtime import models_dir as _md

        models_dir = _md()
    if not models_dir.is_dir():
        return []
    paths = sorted(models_dir.glob(f"{model}*.onnx"), key=lambda p: (p.name != f"{model}.onnx", p.name))
    out: list[tuple[Path, str]] = []
    for p in paths:
        try:
            out.append((p, file_version(p)))
        except OSError:
            continue
    return out


def find_model(stage: str, model: str, version: str, models_dir: Path | None = None) -> Path:
    """The installed file of ``model`` at ``version`` (sha prefix); :class:`ModelGone` if none."""
    found = installed_models(model, models_dir)
    for p, v in found:
        if _same_version(v, version):
            return p
    raise ModelGone(stage, model, version, [v[:12] for _, v in found])
