"""Files outside the catalog: ``photolift enhance FILE... --out DIR``.

Each file gets the same one-click plan, full-resolution render, regression guard
(``engine.enhance.guard``) and atomic, never-overwriting write with metadata
(``engine.export.exporter.write_export``) as a catalog photo, without a catalog: nothing is
recorded, a result that did not help is not written unless forced, and a rerun that would write
identical bytes reuses the file already there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.jobs import CancelToken
from engine.core.paths import display_path
from engine.enhance.guard import guard_message, measure
from engine.enhance.render import PREVIEW_SIDE, Renderer, to_uint8
from engine.export.exporter import EnvironmentFailure, ExportError, render_name, write_export
from engine.ingest.indexer import fingerprint, missing_reason


@dataclass(frozen=True)
class FileResult:
    path: str
    status: str  # 'ok' | 'skipped' | 'error'
    out_path: str | None = None
    error: str | None = None
    measured_gain: float | None = None
    quality_before: float | None = None
    quality_after: float | None = None
    message: str = ""
    recipe: str = ""
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "out_path": self.out_path, "error": self.error,
                "measured_gain": self.measured_gain, "quality_before": self.quality_before,
                "quality_after": self.quality_after, "message": self.message, "recipe": self.recipe,
                "warnings": list(self.warnings)}


def enhance_file(path: Path, out_dir: Path, renderer: Renderer, ops: Sequence[str] | None = None,
                 strength: float = 1.0, fmt: str = "jpeg", quality: int = 92, bits: int = 8,
                 template: str = "{name}_enhanced", force: bool = False,
                 cancel: CancelToken | None = None, defects: dict[str, Any] | None = None,
                 face_w: float | None = None) -> FileResult:
    """Render the one-click enhancement of one file to a new file in ``out_dir``.

    The same plan, full render, guard and atomic export as the catalog path. A result whose
    measured gain is <= 0 is not written unless ``force``. ``out_dir`` must have been checked
    with ``engine.export.exporter.check_out_dir``. Raises ``StageUnavailable`` for a missing model (a
    failure of the whole command); other problems are returned as an ``error`` result.
    ``defects``: the file's ``defects`` stage parameters when it is in the catalog
    (``engine.enhance.defects.stage_params``); without them that stage is left out.
    ``face_w``: the ``faces`` stage's fidelity weight (0 faithful .. 1 generated; None = its default).
    """
    from engine.ingest.imageio import ImageError, is_supported, load_image

    shown = display_path(path)
    if os.path.isdir(path):
        return FileResult(shown, "error", error="a folder, not a photo: enhance takes photo files "
                                                "(for a folder, use photolift export DIR --to OUT --all)")
    if not os.path.lexists(path) or (os.path.islink(path) and not os.path.exists(path)):
        return FileResult(shown, "error", error=missing_reason(path))
    if not is_supported(path):
        return FileResult(shown, "error", error=f"not a supported photo format ({path.suffix or 'no extension'}); "
                                                "photolift reads JPEG, PNG, TIFF, WebP, BMP, HEIC and camera RAW")
    try:
        fp = fingerprint(path)
        view = renderer.load_view(path, PREVIEW_SIDE)
        recipe = renderer.pipeline.plan(view.astype(np.float32) / 255.0, ops, strength, defects=defects,
                                        face_w=face_w)
        loaded = load_image(path)  # the one full-resolution decode: rendered from, and measured against
        rendered = renderer.full(path, fp, recipe, cancel=cancel, store=False, original=loaded)
        original, decode_warning = loaded.rgb, loaded.warning
        del loaded
    except ImageError as e:
        return FileResult(shown, "error", error=e.reason)
    except OSError as e:
        return FileResult(shown, "error", error=f"cannot read {shown}: {e.strerror or e}")
    guard = measure(original, to_uint8(rendered.rgb))
    del original
    gain = guard.gain
    common: dict[str, Any] = {"measured_gain": gain, "quality_before": guard.quality_before,
                              "quality_after": guard.quality_after, "recipe": recipe.summary()}
    if guard.helped is False and not force:
        return FileResult(shown, "skipped", message=guard_message(guard, False) + " (use --force to write it)",
                          **common)
    try:
        stem = render_name(template, {"name": path.stem, "stem": path.stem, "id": "",
                                      "gain": f"{gain:+.2f}" if gain is not None else "na",
                                      "ext": path.suffix.lstrip(".").lower(), "date": "", "camera": ""})
        written, warnings = write_export(rendered, out_dir, stem, fmt, quality, bits, recipe)
    except EnvironmentFailure:
        raise
    except ExportError as e:
        return FileResult(shown, "error", error=str(e), **common)
    if decode_warning:
        warnings.insert(0, decode_warning)
    if written.reused:  # a rerun: the same result is already there
        return FileResult(shown, "skipped", out_path=display_path(written.path),
                          message=f"an identical result is already in the folder ({display_path(written.path)}); "
                                  "not written again", warnings=tuple(warnings), **common)
    return FileResult(shown, "ok", out_path=display_path(written.path), message=guard_message(guard, True),
                      warnings=tuple(warnings), **common)
