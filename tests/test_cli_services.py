"""The command line through the one façade (``app.services``): every command asks the engine through
``Services``, so ``rank``, ``score``, ``export --recommended`` and the grid (its mark, its badge, its
Recommended and degradation filters) agree on every photo of a library, with the calibrated
per-degradation thresholds of models/assessor.json; and the CLI fixes of issue 17."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.services import Services
from engine.assess.degrade import SEVERITY_NAMES
from tests.pipeline_fixtures import install_no_scorer, scored_library, setup_models

ROOT = Path(__file__).resolve().parents[1]
N = 8


@pytest.fixture
def library_dir(tmp_path: Path, make_image: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    return scored_library(tmp_path, make_image, monkeypatch, N, seed=30)


def _run(capsys: Any, *args: str, code: int = 0) -> tuple[list[dict[str, Any]], str]:
    assert main(list(args)) == code
    out, err = capsys.readouterr()
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")], err


def _by_name(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(r["path"]).name: r for r in recs}


def _assert_thumbnails(cat: str, root: Path, n: int) -> None:
    """Every photo under ``root`` has its grid thumbnail on disk (made while it was indexed)."""
    services = Services.open(cat)
    try:
        fps = [services.photo(i).fingerprint for i in services.ids(str(root), {})]
        assert len(fps) == n
        assert all(fp and services.library.thumbs.path_for(fp).is_file() for fp in fps)
    finally:
        services.close()


def _between(values: list[float]) -> float:
    """A threshold in the middle of ``values``: some photos over it, some under."""
    v = sorted(values)
    return (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def test_rank_score_export_recommended_and_the_grid_agree_on_every_photo(
        library_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], qapp: Any) -> None:
    from app.delegate import PhotoDelegate, top_problem

    cat = str(tmp_path / "c.sqlite")
    first = _by_name(_run(capsys, "score", str(library_dir), "--json", "--catalog", cat)[0])
    assert len(first) == N
    _assert_thumbnails(cat, library_dir, N)  # score indexes as the GUI does: with thumbnails
    # calibrated thresholds in the middle of this library: an improvability one, and per degradation
    # one for the two degradations whose severities vary most here (the others far apart from them);
    # not compression: these photos are JPEGs of quality 90, which the enhancer does not deblock, so
    # compression is never one of their reasons (tests/test_consistency.py)
    spread = sorted((n for n in SEVERITY_NAMES if n != "compression"),
                    key=lambda n: -(max(r["severity"][n] for r in first.values())
                                    - min(r["severity"][n] for r in first.values())))
    named = spread[:2]
    sev_th = {n: 5.0 for n in SEVERITY_NAMES}
    sev_th.update({n: _between([r["severity"][n] for r in first.values()]) for n in named})
    assert sev_th[named[0]] != sev_th[named[1]]
    (library_dir.parent / "models" / "assessor.json").write_text(json.dumps({"thresholds": {
        "improvability": _between([r["improvability"] for r in first.values()]), "severity": sev_th}}))
    score = _by_name(_run(capsys, "score", str(library_dir), "--json", "--force", "--catalog", cat)[0])
    rank = _by_name(_run(capsys, "rank", str(library_dir), "--json", "-q", "--catalog", cat)[0])
    exported = _by_name(_run(capsys, "export", str(library_dir), "--to", str(tmp_path / "out"), "--recommended",
                             "--catalog", cat)[0])

    recommended = {n for n, r in score.items() if r["recommended"]}
    assert 0 < len(recommended) < N
    assert {n: (r["improvability"], r["recommended"], r["reasons"]) for n, r in score.items()} == \
        {n: (r["improvability"], r["recommended"], r["reasons"]) for n, r in rank.items()}
    assert set(exported) == recommended  # export --recommended chose exactly these
    for name in named:  # each degradation by its own threshold, not one flat level
        having = {n for n, r in score.items() if name in r["reasons"]}
        assert 0 < len(having) < N
    assert all(set(r["reasons"]) <= set(named) for r in score.values())

    # the grid: the rows the GUI's model pages through, its delegate's mark and badge, its filters
    services = Services.open(cat)
    try:
        rows = {r.name: r for r in services.library.query(str(library_dir), "improvability", {}, 0, 100)}
        delegate = PhotoDelegate()
        assert {n for n, r in rows.items() if delegate.is_recommended(r)} == recommended
        for n, r in rows.items():
            assert round(r.improvability, 4) == score[n]["improvability"]
            top = top_problem(r)
            assert (top[0] if top else None) == (score[n]["reasons"][0] if score[n]["reasons"] else None)
        names = {i: Path(services.photo(i).path).name for i in services.ids(str(library_dir), {})}
        grid_recommended = services.ids(str(library_dir), services.recommended_filter())  # the Recommended filter
        assert {names[i] for i in grid_recommended} == recommended
        for name in named:
            grid_having = {names[i] for i in services.ids(str(library_dir), {"degradation": name})}
            assert grid_having == {n for n, r in score.items() if name in r["reasons"]}
    finally:
        services.close()


def test_the_gui_and_the_commands_import_neither_the_engine_nor_the_catalog() -> None:
    """app/ reaches ``engine`` and ``db`` only through ``app.services`` (also an import-linter
    contract); type-only and function-level imports count too. The screenshot script may use the
    degradation model to make its demo photos."""
    offenders = []
    files = [f for f in sorted((ROOT / "app").rglob("*.py")) if f.name != "services.py"]
    assert len(files) > 20 and any(f.parent.name == "commands" for f in files)
    for f in files:
        if f.name == "screenshots.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{f.name}: {m}" for m in mods if m.split(".")[0] in ("engine", "db")]
    assert offenders == [], offenders
    shots = ROOT / "app" / "screenshots.py"
    offenders = [m for node in ast.walk(ast.parse(shots.read_text(encoding="utf-8")))
                 if isinstance(node, ast.ImportFrom) for m in [node.module or ""]
                 if m.split(".")[0] in ("engine", "db") and m != "engine.assess"]
    assert offenders == []


def test_the_catalog_option_is_accepted_after_the_subcommand(tmp_path: Path, make_image: Any,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    make_image("a.jpg", 64, 48, seed=1)
    cat = tmp_path / "after.sqlite"
    assert main(["index", str(tmp_path / "photos"), "--catalog", str(cat)]) == 0
    assert "1 added" in capsys.readouterr().out
    assert cat.is_file()
    services = Services.open(str(cat))
    try:
        assert services.count(None) == 1
    finally:
        services.close()


def test_export_without_a_selector_says_why_nothing_was_written(tmp_path: Path, make_image: Any,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    make_image("a.jpg", 64, 48, seed=1)
    make_image("b.jpg", 64, 48, seed=2)
    out = tmp_path / "out"
    recs, err = _run(capsys, "export", str(tmp_path / "photos"), "--to", str(out), "--catalog",
                     str(tmp_path / "c.sqlite"))
    assert recs == []
    assert "nothing to export" in err and "none of the 2 photos" in err
    assert "--recommended, --min-score X or --all" in err
    assert not any(out.iterdir()) if out.exists() else True


def test_a_re_export_to_the_same_folder_counts_skipped_photos_as_skipped(
        tmp_path: Path, make_image: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)  # the gain is not measured: every enhancement is applied
    for i in range(3):
        make_image(f"{'sub/' if i % 2 else ''}p{i}.jpg", 64, 48, seed=50 + i)
    library_dir = tmp_path / "photos"
    cat, out = str(tmp_path / "c.sqlite"), tmp_path / "out"
    first, err1 = _run(capsys, "export", str(library_dir), "--to", str(out), "--all", "--catalog", cat)
    written = [r for r in first if r["status"] == "ok"]
    _assert_thumbnails(cat, library_dir, 3)  # export indexes as the GUI does: with thumbnails
    assert written and f"export: {len(written)} written, " in err1, (first, err1)
    again, err2 = _run(capsys, "export", str(library_dir), "--to", str(out), "--all", "--catalog", cat)
    assert {r["path"] for r in again if r["status"] == "skipped"} >= {r["path"] for r in written}
    assert not [r for r in again if r["status"] == "error"]
    assert f"export: 0 written, {len(again)} skipped, 0 failed" in err2
    assert sorted(p.name for p in out.rglob("*.jpg")) == sorted(Path(r["out_path"]).name for r in written)


@pytest.mark.parametrize(("args", "says"), [
    (["export", "{lib}", "--to", "{out}", "--all", "--quality", "0"], "--quality must be 1..100"),
    (["export", "{lib}", "--to", "{out}", "--all", "--format", "jpeg", "--bits", "16"], "JPEG is 8 bit only"),
    (["export", "{lib}", "--to", "{out}", "--all", "--ops", "sharpen"], "sharpen"),
    (["enhance", "{lib}/a.jpg", "--out", "{out}", "--strength", "2"], "--strength must be between 0 and 1"),
    (["enhance", "{lib}/a.jpg", "--out", "{out}", "--template", "{{nope}}"], "nope"),
])
def test_option_mistakes_are_one_line_and_exit_2(args: list[str], says: str, tmp_path: Path, make_image: Any,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    make_image("a.jpg", 64, 48, seed=1)
    lib, out = tmp_path / "photos", tmp_path / "out"
    argv = [a.format(lib=lib, out=out) for a in args] + ["--catalog", str(tmp_path / "c.sqlite")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_export_folder_inside_the_library_is_refused_with_the_reason(tmp_path: Path, make_image: Any,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    make_image("a.jpg", 64, 48, seed=1)
    lib = tmp_path / "photos"
    assert main(["export", str(lib), "--to", str(lib / "out"), "--all", "--catalog", str(tmp_path / "c.sqlite")]) == 1
    err = capsys.readouterr().err
    assert "photolift export:" in err and "library" in err and "Traceback" not in err
    assert not (lib / "out").exists() or not any((lib / "out").iterdir())
