"""``photolift enhance`` and ``photolift export`` as a user runs them (in-process ``main``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import piexif
import pytest
from PIL import Image

from app.cli import main
from tests.conftest import ImageFactory, exif_bytes
from tests.onnx_fixtures import write_assessor
from tests.pipeline_fixtures import hash_tree, install_fake_scorer, install_no_scorer, setup_models

ROOT = Path(__file__).resolve().parents[1]


def _lines(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


@pytest.fixture
def photos(tmp_path: Path, make_image: ImageFactory) -> Path:
    make_image("one.jpg", 64, 48, exif=exif_bytes(orientation=3, gps=True), seed=1)
    make_image("two.png", 40, 40, seed=2)
    make_image("trip/three.jpg", 56, 40, exif=True, seed=3)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return tmp_path / "photos"


def test_enhance_files_to_a_folder(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    before = hash_tree(photos)
    out = tmp_path / "out"
    rc = main(["--catalog", str(tmp_path / "cat.sqlite"), "enhance", str(photos / "one.jpg"),
               str(photos / "two.png"), str(photos / "broken.jpg"), "--out", str(out), "--strength", "0.7"])
    assert rc == 0
    lines = _lines(capsys.readouterr().out)
    assert [d["status"] for d in lines] == ["ok", "ok", "error"]
    assert "broken.jpg" in lines[2]["path"] and lines[2]["error"]
    assert lines[0]["measured_gain"] is None and "not measured" in lines[0]["message"]
    assert lines[0]["out_path"] == str(out / "one_enhanced.jpg")
    assert "restore(" in lines[0]["recipe"] and "tone(" in lines[0]["recipe"]
    ex = piexif.load(str(out / "one_enhanced.jpg"))
    assert ex["0th"][piexif.ImageIFD.Orientation] == 1 and ex["GPS"][piexif.GPSIFD.GPSLatitudeRef] == b"N"
    assert Image.open(out / "two_enhanced.jpg").size == (40, 40)
    assert hash_tree(photos) == before
    rc = main(["enhance", str(photos / "one.jpg"), "--out", str(out), "--ops", "restore"])
    assert rc == 0 and _lines(capsys.readouterr().out)[0]["out_path"] == str(out / "one_enhanced (2).jpg")


@pytest.mark.parametrize("extra", [["--ops", "sharpen"], ["--strength", "1.5"], ["--bits", "16"],
                                   ["--quality", "0"], ["--template", "{bogus}"]])
def test_enhance_usage_errors_exit_2(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    setup_models(tmp_path, monkeypatch)
    rc = main(["enhance", str(photos / "one.jpg"), "--out", str(tmp_path / "o"), *extra])
    assert rc == 2 and "error" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_enhance_missing_model_exits_1_naming_it(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    d = setup_models(tmp_path, monkeypatch)
    (d / "tone.onnx").unlink()
    rc = main(["enhance", str(photos / "one.jpg"), "--out", str(tmp_path / "o")])
    assert rc == 1 and "tone.onnx" in capsys.readouterr().err
    install_no_scorer(monkeypatch)
    assert main(["enhance", str(photos / "one.jpg"), "--out", str(tmp_path / "o"), "--ops", "restore"]) == 0


def test_enhance_guard_skips_regressions_unless_forced(photos: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    setup_models(tmp_path, monkeypatch, "gain", gain=0.5)  # darker: worse for the fake assessor
    install_fake_scorer(monkeypatch)
    out = tmp_path / "o"
    assert main(["enhance", str(photos / "one.jpg"), "--out", str(out), "--ops", "restore"]) == 0
    d = _lines(capsys.readouterr().out)[0]
    assert d["status"] == "skipped" and d["measured_gain"] < 0 and "did not help" in d["message"]
    assert list(out.iterdir()) == []
    assert main(["enhance", str(photos / "one.jpg"), "--out", str(out), "--ops", "restore", "--force"]) == 0
    assert _lines(capsys.readouterr().out)[0]["status"] == "ok"


def test_export_command_end_to_end(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = setup_models(tmp_path, monkeypatch)
    cat = str(tmp_path / "cat.sqlite")
    before = hash_tree(photos)
    out = tmp_path / "export"
    # without an assessor, choosing by score is impossible: a failure of the command, said clearly
    install_no_scorer(monkeypatch)
    assert main(["--catalog", cat, "export", str(photos), "--to", str(out), "--recommended"]) == 1
    assert "assessor" in capsys.readouterr().err
    write_assessor(d / "assessor.onnx")
    monkeypatch.undo()
    setup_models(tmp_path, monkeypatch)
    write_assessor(d / "assessor.onnx")
    # inside the library: refused
    assert main(["--catalog", cat, "export", str(photos), "--to", str(photos / "out"), "--min-score=-1e9"]) == 1
    assert "inside the library" in capsys.readouterr().err
    rc = main(["--catalog", cat, "export", str(photos), "--to", str(out), "--min-score=-1e9",
               "--format", "tiff", "--bits", "16", "--template", "{name}_lift"])
    assert rc == 0
    got = capsys.readouterr()
    lines = _lines(got.out)
    assert sorted(Path(x["path"]).name for x in lines) == ["one.jpg", "three.jpg", "two.png"]  # broken.jpg: not ok
    # stderr is not a terminal here: no self-overwriting progress lines, only the summary
    assert "\r" not in got.err and got.err.strip().startswith("export:")
    for x in lines:
        if x["status"] == "ok":
            assert Path(x["out_path"]).is_file() and x["out_path"].endswith("_lift.tif")
            assert x["measured_gain"] is not None and x["measured_gain"] > 0
        else:
            assert x["status"] == "skipped" and "did not help" in x["error"]
    three = [x for x in lines if "three" in x["path"]][0]
    assert three["status"] == "ok" and Path(three["out_path"]).parent == out / "trip"  # mirrored sub-folder
    assert hash_tree(photos) == before
    # a rerun exports nothing twice
    assert main(["--catalog", cat, "export", str(photos), "--to", str(out), "--format", "tiff", "--bits", "16",
                 "--template", "{name}_lift"]) == 0
    again = _lines(capsys.readouterr().out)
    assert all(x["status"] == "skipped" for x in again)
    assert len(again) == sum(x["status"] == "ok" for x in lines)


def test_export_without_a_selector_says_why_nothing_was_written(photos: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    setup_models(tmp_path, monkeypatch)
    cat = str(tmp_path / "cat.sqlite")
    assert main(["export", str(photos), "--to", str(tmp_path / "o"), "--catalog", cat]) == 0
    err = capsys.readouterr().err
    assert "nothing to export" in err and "has been enhanced yet" in err and "--all" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_export_usage_errors(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", str(photos), "--to", str(tmp_path / "o"), "--recommended", "--min-score", "1"])
    assert e.value.code == 2
    assert main(["export", str(photos), "--to", str(tmp_path / "o"), "--format", "jpeg", "--bits", "16"]) == 2
    assert main(["export", str(tmp_path / "nope"), "--to", str(tmp_path / "o")]) == 2


@pytest.mark.skipif(not (ROOT / "models" / "restorer.onnx").is_file(),
                    reason="models/restorer.onnx is not committed yet")
def test_enhance_with_the_shipped_restorer(tmp_path: Path, make_image: ImageFactory,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    m = tmp_path / "shipped"
    m.mkdir()
    shutil.copy(ROOT / "models" / "restorer.onnx", m / "restorer.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(m))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    install_no_scorer(monkeypatch)
    src = make_image("real.jpg", 96, 64, exif=exif_bytes(gps=True))
    rc = main(["enhance", str(src), "--out", str(tmp_path / "o"), "--ops", "restore"])
    assert rc == 0
    d = _lines(capsys.readouterr().out)[0]
    assert d["status"] == "ok" and os.path.getsize(d["out_path"]) > 0
    with Image.open(d["out_path"]) as im:
        assert im.size == (96, 64)


def test_export_all_without_an_assessor(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    out = tmp_path / "all"
    assert main(["--catalog", str(tmp_path / "c.sqlite"), "export", str(photos), "--to", str(out), "--all",
                 "--format", "png"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert [x["status"] for x in lines] == ["ok"] * 3
    assert all(x["measured_gain"] is None and "not measured" in x["message"] for x in lines)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "one_enhanced.png", "trip/three_enhanced.png", "two_enhanced.png"]


def test_enhance_refuses_an_output_folder_inside_the_library(photos: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from db.catalog import Catalog
    from tests.pipeline_fixtures import index

    setup_models(tmp_path, monkeypatch)
    cat_path = str(tmp_path / "lib.sqlite")
    cat = Catalog.open(cat_path)
    index(cat, photos)
    cat.close()
    rc = main(["--catalog", cat_path, "enhance", str(photos / "one.jpg"), "--out", str(photos / "trip" / "x")])
    assert rc == 1 and "inside the library" in capsys.readouterr().err
    assert not (photos / "trip" / "x").exists()
