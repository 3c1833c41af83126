"""The one-click enhancement pipeline: ordered stages by name.

Stages, always run in this order whatever order the user lists them in:

``defects``
    the camera-defect correction (``engine.enhance.defects``): dust and smudges divided out by their
    estimated attenuation maps, opaque lines and obstructions inpainted, hot pixels repaired,
    per-camera biases corrected. Its parameters come from the photo's camera series (detected
    beforehand, ``photolift defects`` or the GUI) and are stored in the recipe in the photo's own
    frame (0..1), so replay needs nothing else; planned only when the caller passes them (a photo
    whose series has no undismissed defect gets no ``defects`` stage).
``restore``
    the restoration network (``engine.enhance.restore``, ``models/restorer*.onnx``): blur, noise and
    compression removal, tiled at full resolution. A recipe stores the model's version; replay
    needs that exact file (see :func:`engine.enhance.recipes.find_model`).
``faces``
    the face restorer (``engine.enhance.faces``, ``models/face_restorer.onnx``): faces found by
    ``models/face_detector.onnx`` on the screen view when the recipe is *planned* (boxes stored in
    the recipe in the photo's frame, 0..1, with the detector's version as provenance) are cropped,
    restored with a learned codebook and pasted back under a soft mask with their colour kept. The
    stage's strength is the fidelity weight ``w`` (0 faithful .. 1 generated), so unlike the other
    stages strength 0 is not "off"; it is planned at ``faces.DEFAULT_W`` unless the caller gives
    ``face_w``. Replay needs that exact restorer file. On a photo without faces the stage is kept
    (with no boxes: detection ran and found none) and changes nothing. Not in the default one-click
    set (``DEFAULT_STAGES``) until it pays on real photos: ask for it by name.
``tone``
    the tone operators (``engine.enhance.tone``). Their parameters are predicted once by
    ``models/tone.onnx`` when the recipe is *planned* and stored in the recipe, so replay needs
    only the operators (the model version is kept as provenance).

Defects come first because they are fixed in sensor position and measured on the original
pixels; the restorer and the tone operators would move them. Restoration comes next because tone operators (exposure, local contrast, saturation) amplify
noise and blocking; removing them first is what every raw converter does.

Stages are resolved when used, not at import time: a missing module or model file surfaces as
:class:`StageUnavailable` naming the stage and the file, and only for the stage that needs it.
Planning predicts the tone parameters from the *original* view (not the restored one): the
restorer does not move global tone, and running it at planning time would double the cost.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.jobs import CancelToken, Progress, ProgressFn
from engine.enhance.recipes import (
    RECIPE_SCHEMA,
    ModelGone,
    Recipe,
    StageSpec,
    app_version,
    file_version,
    find_model,
)

STAGE_ORDER: tuple[str, ...] = ("defects", "restore", "faces", "tone")
# what a one-click enhance runs when no stage is named (``faces`` is opt-in until it pays)
DEFAULT_STAGES: tuple[str, ...] = ("defects", "restore", "tone")
RESTORER_MODEL = "restorer"
FACE_RESTORER_MODEL = "face_restorer"
FACE_DETECTOR_MODEL = "face_detector"
TONE_MODEL = "tone"


class StageUnavailable(RuntimeError):
    """A stage cannot run here: its module or model file is missing."""


def parse_ops(ops: str | Sequence[str] | None) -> list[str]:
    """``'restore,tone'`` or a list -> stage names in pipeline order; ``None`` = ``DEFAULT_STAGES``.

    Raises ``ValueError`` for an unknown stage name (a usage error in the CLI).
    """
    if ops is None:
        return list(DEFAULT_STAGES)
    names = [s.strip() for s in ops.split(",")] if isinstance(ops, str) else [s.strip() for s in ops]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in STAGE_ORDER]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGE_ORDER)}")
    if not names:
        raise ValueError(f"no stage selected; known: {', '.join(STAGE_ORDER)}")
    return [n for n in STAGE_ORDER if n in names]


def _check_strength(strength: float) -> float:
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    return s


class Pipeline:
    """Plans recipes and applies them. Thread-safe; share one."""

    def __init__(self, models_dir: Path | None = None) -> None:
        self._models_dir = models_dir

    # -- model files --------------------------------------------------------------------------
    def models_dir(self) -> Path:
        if self._models_dir is not None:
            return self._models_dir
        from engine.core.runtime import models_dir

        return models_dir()

    def _current_model(self, stage: str, model: str) -> tuple[Path, str]:
        path = self.models_dir() / f"{model}.onnx"
        if not path.is_file():
            raise StageUnavailable(f"the {stage!r} stage needs the model file {path}, which is missing")
        return path, file_version(path)

    @staticmethod
    def _restorer(path: Path) -> Any:
        """The shared restorer of that model file (one ORT session per file, process-wide)."""
        try:
            from engine.enhance.restore import get_restorer
        except ImportError as e:  # pragma: no cover - the module is part of the app
            raise StageUnavailable(f"the 'restore' stage is not available: {e}") from e
        return get_restorer(path)

    # -- planning -----------------------------------------------------------------------------
    def plan(self, view: np.ndarray, ops: str | Sequence[str] | None = None, strength: float = 1.0,
             defects: dict[str, Any] | None = None, face_w: float | None = None) -> Recipe:
        """Make the recipe for ``view`` (float32 HxWx3 0..1, a screen-size copy of the photo).

        Records the version of every model involved and the tone parameters predicted now.
        ``defects``: the photo's ``defects`` stage parameters (``engine.enhance.defects.stage_params``);
        without them the stage is left out (nothing known to correct).
        ``face_w``: the ``faces`` stage's fidelity weight (its strength; default ``faces.DEFAULT_W``).
        Raises :class:`StageUnavailable` naming the missing model.
        """
        names = parse_ops(ops)
        strength = _check_strength(strength)
        stages: list[StageSpec] = []
        for name in names:
            if name == "defects":
                if defects and defects.get("items"):
                    stages.append(StageSpec("defects", strength, None, None, _jsonable(defects)))
            elif name == "restore":
                _, ver = self._current_model("restore", RESTORER_MODEL)
                from engine.enhance.levels import JPEG_ZONE

                # the dead zone in force is part of the recipe: a recipe from before it (no key)
                # replays as it was made, deblocking good JPEGs too
                stages.append(StageSpec("restore", strength, RESTORER_MODEL, ver, {"jpeg_zone": JPEG_ZONE}))
            elif name == "faces":
                stages.append(self._plan_faces(view, face_w))
            elif name == "tone":
                path, ver = self._current_model("tone", TONE_MODEL)
                try:
                    from engine.enhance import tone
                except ImportError as e:  # pragma: no cover
                    raise StageUnavailable(f"the 'tone' stage is not available: {e}") from e
                v = np.ascontiguousarray(view, dtype=np.float32)
                params = tone.predict_params(v, model_path=path)
                params = tone.quality_checked(v, params, path)
                stages.append(StageSpec("tone", strength, TONE_MODEL, ver, _jsonable(params)))
        return Recipe(stages=tuple(stages), strength=strength, schema=RECIPE_SCHEMA,
                      app=f"photolift {app_version()}")

    def _plan_faces(self, view: np.ndarray, face_w: float | None) -> StageSpec:
        det_path, det_ver = self._current_model("faces", FACE_DETECTOR_MODEL)
        _, ver = self._current_model("faces", FACE_RESTORER_MODEL)
        try:
            from engine.enhance import faces
        except ImportError as e:  # pragma: no cover
            raise StageUnavailable(f"the 'faces' stage is not available: {e}") from e
        w = _check_strength(faces.DEFAULT_W if face_w is None else face_w)
        found = faces.detect(np.ascontiguousarray(view, dtype=np.float32), det_path)
        params = {"faces": [f.to_dict() for f in found], "detector": det_ver,
                  "threshold": faces.DEFAULT_THRESHOLD}
        return StageSpec("faces", w, FACE_RESTORER_MODEL, ver, params)

    # -- checking and applying ----------------------------------------------------------------
    def check(self, recipe: Recipe) -> None:
        """Raise :class:`ModelGone` / :class:`StageUnavailable` if ``recipe`` cannot render here."""
        for st in recipe.stages:
            if st.name in ("restore", "faces"):
                self._restore_path(st)
            elif st.name in ("tone", "defects"):
                pass  # replays from stored parameters; no model needed
            else:
                raise StageUnavailable(f"unknown stage {st.name!r} in recipe (known: {', '.join(STAGE_ORDER)})")

    def _restore_path(self, st: StageSpec) -> Path:
        """The exact network file a ``restore`` or ``faces`` stage was made with."""
        if not st.model_version:
            raise StageUnavailable(f"the recipe's {st.name!r} stage names no model version")
        default = FACE_RESTORER_MODEL if st.name == "faces" else RESTORER_MODEL
        return find_model(st.name, st.model or default, st.model_version, self.models_dir())

    def apply(self, recipe: Recipe, rgb: np.ndarray, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> np.ndarray:
        """Apply ``recipe`` to ``rgb`` (float32 HxWx3 0..1) and return a new float32 image.

        The input is never modified. Raises :class:`ModelGone` when a restore stage's model
        version is no longer installed.
        """
        self.check(recipe)
        out = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
        n = len(recipe.stages)
        for i, st in enumerate(recipe.stages):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if progress is not None:
                progress(Progress(i, n, f"{st.name}"))
            if st.strength <= 0.0 and st.name != "faces":  # a faces stage's strength is w; 0 = faithful
                continue
            if st.name == "defects":
                from engine.enhance import defects

                out = defects.apply_correction(out, st.params, strength=float(st.strength))
            elif st.name == "restore":
                restorer = self._restorer(self._restore_path(st))
                out = restorer.run(out, strength=float(st.strength), progress=progress, cancel=cancel,
                                   jpeg_zone=st.params.get("jpeg_zone"))
            elif st.name == "faces":
                from engine.enhance import faces

                out = faces.apply_faces(out, st.params, float(st.strength), self._restore_path(st))
            elif st.name == "tone":
                from engine.enhance import tone

                out = tone.apply_params(out, st.params, strength=float(st.strength))
            out = np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)
        if progress is not None:
            progress(Progress(n, n, "done"))
        return out


def _jsonable(v: Any) -> Any:
    """numpy scalars/arrays -> plain JSON values (recipes are JSON)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


_shared: Pipeline | None = None
_shared_lock = threading.Lock()


def get_pipeline() -> Pipeline:
    """The process-wide pipeline (models from ``engine.core.runtime.models_dir()``)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Pipeline()
        return _shared


__all__ = ["DEFAULT_STAGES", "STAGE_ORDER", "ModelGone", "Pipeline", "StageUnavailable", "get_pipeline", "parse_ops"]
