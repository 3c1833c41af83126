"""``photolift`` / ``photolift open DIR``: the GUI entry of the CLI (argument handling only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import cli
from app.commands import open_cmd

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def test_open_is_a_command_and_the_default() -> None:
    mods = cli._load_commands()
    assert "open" in mods
    parser = cli.build_parser(mods)
    args = parser.parse_args(["open", "/some/dir"])
    assert args.command == "open" and args.dir == "/some/dir"
    assert parser.parse_args([]).command is None  # main() treats no command as "open"


def test_open_rejects_a_path_that_is_not_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file.jpg"
    f.write_bytes(b"x")
    assert cli.main(["open", str(f)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_open_starts_the_gui_on_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run_gui(folder: str | None = None, catalog: str | None = None) -> int:
        seen.update(folder=folder, catalog=catalog)
        return 0

    import app.main

    monkeypatch.setattr(app.main, "run_gui", fake_run_gui)
    assert cli.main(["--catalog", str(tmp_path / "c.sqlite"), "open", str(tmp_path)]) == 0
    assert seen == {"folder": str(tmp_path), "catalog": str(tmp_path / "c.sqlite")}
    seen.clear()
    assert open_cmd.run(cli.build_parser(cli._load_commands()).parse_args([])) == 0
    assert seen["folder"] is None


def test_run_gui_opens_the_folder_and_shuts_down_in_order(qapp, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.main import run_gui
    from app.main_window import MainWindow
    from app.workers import busy_pools
    from tests.conftest import make_rgb

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path / "config"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "config"))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(tmp_path / "no-models"))  # scoring reports the missing model
    photos = tmp_path / "p"
    photos.mkdir()
    Image.fromarray(make_rgb(64, 48)).save(photos / "a.jpg")
    seen: dict[str, object] = {}

    def close_when_idle() -> None:
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins:
            QTimer.singleShot(50, close_when_idle)
            return
        w = wins[0]
        if w.folder is None or w.jobs.jobs():
            QTimer.singleShot(50, close_when_idle)
            return
        seen["total"] = w.model.total
        seen["folder"] = w.folder
        w.close()

    QTimer.singleShot(50, close_when_idle)
    code = run_gui(str(photos), str(tmp_path / "c.sqlite"))
    assert code == 0
    assert seen == {"total": 1, "folder": str(photos.resolve())}
    assert not busy_pools()


def test_global_options_are_accepted_after_the_subcommand_too() -> None:
    parser = cli.build_parser(cli._load_commands())
    a = parser.parse_args(["index", "/lib", "--catalog", "/tmp/x.sqlite", "-v"])
    assert a.catalog == "/tmp/x.sqlite" and a.verbose is True
    b = parser.parse_args(["--catalog", "/tmp/y.sqlite", "index", "/lib"])
    assert b.catalog == "/tmp/y.sqlite" and b.verbose is False
    c = parser.parse_args(["--catalog", "/tmp/y.sqlite", "rank", "/lib", "--catalog", "/tmp/z.sqlite"])
    assert c.catalog == "/tmp/z.sqlite"
