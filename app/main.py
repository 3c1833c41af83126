"""GUI entry point: QApplication set-up, the catalog, the main window, and an orderly shutdown."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from app import settings as S

if TYPE_CHECKING:
    from app.services import Services

log = logging.getLogger(__name__)

ORG = "photolift"
APP = "photolift"


def make_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication, made once, with high-DPI rendering that follows the screen's real scale."""
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    # Fractional scale factors (125%, 150%) are honoured instead of rounded; Qt 6 always scales.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(APP)
    app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationDisplayName("photolift")
    from app.qtfix import collect_on_gui_thread, guard_none_refcount

    guard_none_refcount()
    collect_on_gui_thread()
    return app


def offer_restore(location: str | None, error: Exception) -> Services | None:
    """The catalog is damaged: say so, and offer to put its newest good backup back."""
    from app.services import CatalogCare, CatalogError, Services

    db_file = CatalogCare.sqlite_file(location)
    best = CatalogCare.newest_good_backup(db_file) if db_file is not None else None
    box = QMessageBox(QMessageBox.Icon.Critical, "photolift", f"The catalog cannot be opened:\n{error}")
    restore_btn = box.addButton("Restore backup", QMessageBox.ButtonRole.AcceptRole) if best else None
    box.addButton(QMessageBox.StandardButton.Close)
    box.exec()
    if restore_btn is None or box.clickedButton() is not restore_btn or db_file is None:
        return None
    try:
        CatalogCare.restore(db_file)
        return Services.open(location)
    except (CatalogError, OSError) as e:
        QMessageBox.critical(None, "photolift", f"The backup could not be restored:\n{e}")
        return None


def run_gui(folder: str | None = None, catalog: str | None = None) -> int:
    """Open the main window (on ``folder``, or on the last library) and run the event loop."""
    from app.main_window import MainWindow
    from app.services import CatalogDamaged, CatalogError, Services

    app = make_app()
    settings = S.Settings()
    location = catalog or os.environ.get("PHOTOLIFT_CATALOG") or settings.get(S.CATALOG) or None
    try:
        services = Services.open(location, threads=int(settings.get(S.THREADS)), cluster=str(settings.get(S.CLUSTER)))
    except CatalogDamaged as e:
        restored = offer_restore(location, e)
        if restored is None:
            return 1
        services = restored
    except CatalogError as e:
        QMessageBox.critical(None, "photolift", f"The catalog cannot be opened:\n{e}")
        return 1
    window = MainWindow(services, settings)
    window.show()
    start = folder or settings.get(S.LAST_FOLDER) or None
    if start and os.path.isdir(start):
        # After the window is on screen, so a big folder never delays the first paint.
        QTimer.singleShot(0, lambda: window.open_folder(start))
    try:
        code = app.exec()
    finally:
        # Shut down in order: the window stopped its pools in closeEvent; make sure, then close
        # the catalog (its writer thread drains the queued writes first).
        window.shutdown()
        services.close()
        settings.sync()
    return int(code)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = sys.argv[1] if len(sys.argv) > 1 else None
    return run_gui(folder)


if __name__ == "__main__":
    sys.exit(main())
