"""Recipes: canonical JSON, hashing, schema versions, model lookup; the pipeline's stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.core.runtime import model_version
from engine.enhance.pipeline import DEFAULT_STAGES, STAGE_ORDER, Pipeline, StageUnavailable, parse_ops
from engine.enhance.recipes import (
    RECIPE_SCHEMA,
    ModelGone,
    Recipe,
    RecipeError,
    StageSpec,
    find_model,
    from_json,
    recipe_hash,
)
from tests.onnx_fixtures import write_restorer
from tests.pipeline_fixtures import setup_models


def _recipe(**tone: float) -> Recipe:
    return Recipe(stages=(StageSpec("restore", 1.0, "restorer", "abcdef012345", {}),
                          StageSpec("tone", 0.5, "tone", "1234567890ab", dict(tone))), strength=1.0)


def test_json_round_trip_is_canonical_and_versioned() -> None:
    r = _recipe(exposure=0.25, contrast=0.1)
    text = r.to_json()
    d = json.loads(text)
    assert d["schema"] == RECIPE_SCHEMA
    assert d["app"].startswith("photolift ")
    assert [s["name"] for s in d["stages"]] == ["restore", "tone"]
    back = from_json(text)
    assert back.stages == r.stages and back.strength == r.strength
    assert back.to_json() == text  # canonical: the same edit serialises identically
    assert text == json.dumps(d, sort_keys=True, separators=(",", ":"))


def test_hash_follows_every_parameter_but_not_the_app_version() -> None:
    a, b = _recipe(exposure=0.25), _recipe(exposure=0.26)
    assert recipe_hash(a) != recipe_hash(b)
    assert recipe_hash(a) == recipe_hash(_recipe(exposure=0.25))
    other_app = Recipe(stages=a.stages, strength=a.strength, app="photolift 9.9.9")
    assert recipe_hash(other_app) == recipe_hash(a)
    weaker = Recipe(stages=(a.stages[0], StageSpec("tone", 0.4, "tone", "1234567890ab", {"exposure": 0.25})))
    assert recipe_hash(weaker) != recipe_hash(a)


@pytest.mark.parametrize("text, needle", [
    ("not json", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"stages": []}', "schema"),
    ('{"schema": 1, "stages": {}}', "list"),
    ('{"schema": 1, "stages": [{"params": {}}]}', "no name"),
    ('{"schema": 1, "stages": [{"name": "tone", "strength": "x"}]}', "number"),
    ('{"schema": 1, "stages": [{"name": "tone", "params": []}]}', "object"),
])
def test_malformed_recipes_are_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(RecipeError, match=needle):
        from_json(text)


def test_recipe_from_a_newer_photolift_is_refused_clearly() -> None:
    d = json.loads(_recipe().to_json())
    d["schema"] = RECIPE_SCHEMA + 1
    with pytest.raises(RecipeError, match="newer photolift"):
        from_json(json.dumps(d))


def test_summary_and_identity() -> None:
    assert Recipe(stages=()).is_identity and Recipe(stages=()).summary() == "original"
    s = _recipe().summary()
    assert s.startswith("restore(abcdef01)") and "tone(12345678)x0.5" in s


def test_parse_ops_orders_and_validates() -> None:
    assert parse_ops(None) == list(DEFAULT_STAGES)
    assert "faces" in STAGE_ORDER and "faces" not in DEFAULT_STAGES  # opt-in until it pays
    assert parse_ops("tone,faces,restore") == ["restore", "faces", "tone"]
    assert parse_ops("tone,restore") == ["restore", "tone"]
    assert parse_ops(["tone"]) == ["tone"]
    with pytest.raises(ValueError, match="unknown stage"):
        parse_ops("restore,sharpen")
    with pytest.raises(ValueError, match="no stage"):
        parse_ops(" , ")


def test_find_model_finds_an_older_version_kept_under_another_name(tmp_path: Path) -> None:
    d = tmp_path / "models"
    cur = write_restorer(d / "restorer.onnx", "blur")
    old = write_restorer(d / "restorer_2026-01.onnx", "identity", offset=0.01)
    v_cur, v_old = model_version(cur), model_version(old)
    assert v_cur != v_old
    assert find_model("restore", "restorer", v_old, d) == old
    assert find_model("restore", "restorer", v_cur, d) == cur
    old.unlink()
    with pytest.raises(ModelGone) as e:
        find_model("restore", "restorer", v_old, d)
    msg = str(e.value)
    assert v_old in msg and "no longer installed" in msg and v_cur in msg


def test_pipeline_plans_records_versions_and_replays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = setup_models(tmp_path, monkeypatch, "gain", gain=0.5)
    p = Pipeline(d)
    rng = np.random.default_rng(0)
    view = rng.random((40, 56, 3), dtype=np.float32)
    r = p.plan(view, None, 0.8)
    assert [s.name for s in r.stages] == ["restore", "tone"]
    assert r.stages[0].model_version == model_version(d / "restorer.onnx")
    assert r.stages[1].model_version == model_version(d / "tone.onnx")
    assert r.stages[1].params["exposure"] == pytest.approx(0.3, abs=1e-5)
    assert all(s.strength == 0.8 for s in r.stages)
    json.dumps(r.to_dict())  # JSON-serialisable
    big = rng.random((90, 120, 3), dtype=np.float32)
    only_restore = Recipe(stages=(r.stages[0],))
    out = p.apply(only_restore, big)
    # gain 0.5 restorer at strength 0.8: x + 0.8 * (0.5x - x) = 0.6x
    np.testing.assert_allclose(out, big * 0.6, atol=2e-5)
    assert out.dtype == np.float32 and out is not big
    full = p.apply(from_json(r.to_json()), big)  # replay from the stored JSON
    again = p.apply(r, big)
    np.testing.assert_array_equal(full, again)
    assert not np.allclose(full, out)  # the tone stage did something


def test_pipeline_names_the_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = setup_models(tmp_path, monkeypatch)
    (d / "tone.onnx").unlink()
    p = Pipeline(d)
    view = np.full((16, 16, 3), 0.5, np.float32)
    with pytest.raises(StageUnavailable, match="tone.onnx"):
        p.plan(view, "tone")
    assert [s.name for s in p.plan(view, "restore").stages] == ["restore"]  # other stages unaffected
    r = p.plan(view, "restore")
    (d / "restorer.onnx").unlink()
    with pytest.raises(StageUnavailable, match="restorer.onnx"):
        p.plan(view, "restore")
    with pytest.raises(ModelGone, match="no longer installed"):
        p.apply(r, view)


def test_tone_stage_replays_without_its_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = setup_models(tmp_path, monkeypatch)
    p = Pipeline(d)
    view = np.random.default_rng(1).random((24, 24, 3), dtype=np.float32)
    r = p.plan(view, "tone")
    before = p.apply(r, view)
    (d / "tone.onnx").unlink()  # parameters are in the recipe: replay still works
    np.testing.assert_array_equal(p.apply(r, view), before)


def test_strength_out_of_range_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = setup_models(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="strength"):
        Pipeline(d).plan(np.zeros((8, 8, 3), np.float32), None, 1.5)


def test_tone_is_planned_only_where_the_judge_says_it_helps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a calibrated Q margin in ``tone.json`` (made for that very model file) and Q installed,
    the tone stage keeps its prediction only when Q gains more than the margin; otherwise it is
    planned neutral, and what Q said is stored either way. Without Q the prediction stands."""
    import hashlib
    import shutil

    from engine.enhance import tone as T

    d = setup_models(tmp_path, monkeypatch, "gain", gain=0.5)
    view = np.random.default_rng(3).random((64, 80, 3), dtype=np.float32) * 0.5 + 0.25
    sha = hashlib.sha256((d / "tone.onnx").read_bytes()).hexdigest()

    def plan_with(margin: float) -> dict:
        (d / "tone.json").write_text(json.dumps({"model_sha256": sha, "q_margin": margin}))
        T._calibrations.clear()
        return dict(Pipeline(d).plan(view, "tone", 1.0).stages[0].params)

    try:
        assert "quality_check" not in plan_with(-50.0)  # no Q installed in d: the prediction stands
        shutil.copy(Path(__file__).resolve().parents[1] / "models" / "quality.onnx", d / "quality.onnx")
        kept = plan_with(-50.0)  # any change passes a margin of -50 points
        assert kept["quality_check"]["kept"] is True and kept["exposure"] == pytest.approx(0.3, abs=1e-5)
        refused = plan_with(50.0)  # no change gains 50 points on a 1..10 scale
        note = refused["quality_check"]
        assert note["kept"] is False and 1.0 <= note["q_before"] <= 10.0 and 1.0 <= note["q_after"] <= 10.0
        assert all(refused[k] == v for k, v in T.NEUTRAL.items())
        assert "left as is" in Pipeline(d).plan(view, "tone", 1.0).summary()
        (d / "tone.json").write_text(json.dumps({"model_sha256": sha, "q_margin": -50.0}))
        T._calibrations.clear()
        assert "left as is" not in Pipeline(d).plan(view, "tone", 1.0).summary()
        (d / "tone.json").write_text(json.dumps({"model_sha256": sha, "q_margin": 50.0}))
        T._calibrations.clear()
        # the refused recipe changes nothing when applied
        out = Pipeline(d).apply(Recipe(stages=(Pipeline(d).plan(view, "tone", 1.0).stages[0],)), view)
        np.testing.assert_allclose(out, view, atol=1e-5)
    finally:
        T._calibrations.clear()


def test_keep_by_quality_compares_the_same_reduced_copy() -> None:
    from engine.enhance import tone as T

    seen: list[tuple[int, ...]] = []

    def brightness(img: np.ndarray) -> float:  # a judge that likes brighter photos
        seen.append(img.shape)
        return float(img.mean()) / 25.5

    dark = np.full((1200, 1600, 3), 0.2, np.float32)
    keep, qb, qa = T.keep_by_quality(dark, {"exposure": 0.5}, 0.0, brightness)
    assert keep and qa > qb
    assert seen == [(576, 768, 3), (576, 768, 3)]  # both at the judge's 768-px scale
    keep, qb, qa = T.keep_by_quality(dark, {"exposure": -0.5}, 0.0, brightness)
    assert not keep and qa < qb


def test_the_photo_record_says_when_tone_was_left_as_is() -> None:
    from engine.library import _ops

    kept = StageSpec("tone", 1.0, "tone", "v", {"exposure": 0.3, "quality_check": {"kept": True}})
    refused = StageSpec("tone", 1.0, "tone", "v", {"exposure": 0.0, "quality_check": {"kept": False}})
    restore = StageSpec("restore", 1.0, "restorer", "v", {})
    assert _ops(Recipe(stages=(restore, kept)).to_json()) == ("restore", "tone")
    assert _ops(Recipe(stages=(restore, refused)).to_json()) == ("restore", "tone (left as is: no gain by Q)")
