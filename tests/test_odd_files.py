"""Odd files and names, handled the same way by every command: animated and multi-page images
(first frame, said so), unsupported kinds (refused with a reason), damaged EXIF (a recorded
warning, nothing on stderr), symbolic links to an ancestor (not followed) and link loops."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image
from sqlalchemy import select

from app.cli import main
from db.catalog import Catalog
from db.schema import Photo
from engine.ingest.imageio import load_image
from engine.ingest.indexer import Indexer
from tests.conftest import ImageFactory, make_rgb
from tests.onnx_fixtures import write_assessor
from tests.pipeline_fixtures import install_no_scorer, setup_models

ROOT = Path(__file__).resolve().parents[1]


def _frames(path: Path, n: int = 3, fmt: str = "WEBP") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ims = [Image.fromarray(make_rgb(48, 32, seed=i)) for i in range(n)]
    ims[0].save(path, fmt, save_all=True, append_images=ims[1:], duration=100)
    return path


def _corrupt_exif_jpeg(path: Path) -> Path:
    exif = bytearray(piexif.dump({"0th": {piexif.ImageIFD.Make: b"Cam", piexif.ImageIFD.Model: b"X" * 40}}))
    i = exif.find(b"\x01\x10")  # the Model tag: claim far more data than the block holds
    exif[i + 4:i + 8] = (100000).to_bytes(4, "big")
    buf = io.BytesIO()
    Image.fromarray(make_rgb(48, 32)).save(buf, "JPEG", exif=bytes(exif))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def _rows(cat: Catalog) -> dict[str, Photo]:
    with cat.session() as s:
        return {Path(p.path).name: p for p in s.scalars(select(Photo))}


def test_animated_and_multipage_images_use_the_first_frame_and_say_so(tmp_path: Path) -> None:
    webp = _frames(tmp_path / "photos" / "anim.webp")
    tif = _frames(tmp_path / "photos" / "pages.tif", 2, "TIFF")
    im = load_image(webp)
    assert np.array_equal(im.rgb.shape, (32, 48, 3)) and "animated image (3 frames)" in (im.warning or "")
    assert "multi-page image (2 pages)" in (load_image(tif).warning or "")
    with Catalog.open(str(tmp_path / "c.sqlite")) as cat:
        list(Indexer(cat, workers=1).index(tmp_path / "photos"))
        rows = _rows(cat)
    assert rows["anim.webp"].status == "ok" and "first is used" in (rows["anim.webp"].warning or "")
    assert rows["pages.tif"].status == "ok" and "multi-page" in (rows["pages.tif"].warning or "")


def test_every_command_treats_gif_and_animations_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    models = setup_models(tmp_path, monkeypatch)
    write_assessor(models / "assessor.onnx")
    install_no_scorer(monkeypatch)
    gif = _frames(tmp_path / "photos" / "a.gif", 3, "GIF")
    webp = _frames(tmp_path / "photos" / "anim.webp")
    cat = ["--catalog", str(tmp_path / "c.sqlite")]
    assert main([*cat, "enhance", str(gif), str(webp), "--out", str(tmp_path / "out"), "--force"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["status"] == "error" and "not a supported photo format (.gif)" in lines[0]["error"]
    assert lines[1]["status"] == "ok" and any("animated image (3 frames)" in w for w in lines[1]["warnings"])
    assert main([*cat, "score", str(gif), "--json"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[0])
    assert d["status"] == "error" and "not a supported photo format" in d["error"]


@pytest.mark.filterwarnings("always")  # as engine.ingest.imageio sets it; pytest's "default" would show one per place
def test_damaged_exif_is_a_recorded_warning_not_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import engine.ingest.imageio as io_mod

    # pytest's own warning capture puts the standard hook back; ours is what runs outside tests
    monkeypatch.setattr(warnings, "showwarning", io_mod._showwarning)
    p = _corrupt_exif_jpeg(tmp_path / "photos" / "bad_exif.jpg")
    for _ in range(2):  # reported every time, not once per process
        im = load_image(p)
        assert "decoder warning" in (im.warning or "")
    with Catalog.open(str(tmp_path / "c.sqlite")) as cat:
        list(Indexer(cat, workers=2).index(tmp_path / "photos"))
        row = _rows(cat)["bad_exif.jpg"]
    assert row.status == "ok" and "decoder warning" in (row.warning or "")
    # as a user runs it: nothing of Pillow's on stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "app.cli", "--catalog", str(tmp_path / "c2.sqlite"), "index",
                        str(tmp_path / "photos"), "-q"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Warning" not in r.stderr and "Skipping tag" not in r.stderr, r.stderr


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")
def test_links_to_an_ancestor_are_not_followed_and_loops_are_named(tmp_path: Path, make_image: ImageFactory,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    make_image("a.jpg")
    make_image("sub/b.jpg")
    (root / "sub" / "again").symlink_to("..")  # to an ancestor
    (root / "up").symlink_to(tmp_path)  # to the library's parent: would index the library twice
    (root / "l1").symlink_to("l2")
    (root / "l2").symlink_to("l1")  # a two-link loop
    (root / "gone.jpg").symlink_to("nowhere.jpg")
    with Catalog.open(str(tmp_path / "c.sqlite")) as cat:
        evs = list(Indexer(cat, workers=1).index(root / "sub"))  # the ancestor link would reach a.jpg
        evs += list(Indexer(cat, workers=1).index(root))
        with cat.session() as s:
            paths = sorted(p for (p,) in s.execute(select(Photo.path)))
    assert [Path(p).relative_to(root).as_posix() for p in paths] == ["a.jpg", "sub/b.jpg"]  # each once
    skipped = {Path(e.path).name: e.error or "" for e in evs if e.kind == "skipped"}
    assert "folder above it" in skipped["again"] and "folder above it" in skipped["up"]
    assert "loop of symbolic links" in skipped["l1"] and "loop of symbolic links" in skipped["l2"]
    assert "broken symbolic link" in skipped["gone.jpg"]
    capsys.readouterr()
    assert main(["--catalog", str(tmp_path / "c.sqlite"), "index", str(root / "l1")]) == 2
    assert "loop of symbolic links" in capsys.readouterr().err
    assert main(["--catalog", str(tmp_path / "c.sqlite"), "enhance", str(root / "l1"), str(root / "sub"),
                 "--out", str(tmp_path / "out")]) == 0
    errs = [json.loads(x)["error"] for x in capsys.readouterr().out.splitlines()]
    assert errs[0] == "a loop of symbolic links" and errs[1].startswith("a folder, not a photo")
