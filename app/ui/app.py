"""The tray app: wires the controller, the history, the tray (or the main window where
there is no tray), the graph window and the error dialogs."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget

from app.core import logs
from app.core.classes import AppClasses
from app.core.errors import BraidError
from app.core.model import EngineSnapshot
from app.core.present import UserMessage
from app.core.profiles.store import ProfileStore
from app.ui import autostart
from app.ui.apps_window import AppsWindow
from app.ui.controller import AppController, EngineFactory
from app.ui.dialogs import ErrorPresenter, install_excepthook
from app.ui.graph_window import PathGraphWindow
from app.ui.history import PathHistory
from app.ui.icons import state_icon
from app.ui.log_view import LogView
from app.ui.main_window import MainWindow
from app.ui.menu import ControlMenu
from app.ui.port import target_label
from app.ui.settings_dialog import SettingsDialog
from app.ui.tray import TrayView
from app.wire.version import package_version

log = logging.getLogger(__name__)


class BraidApp(QObject):
    def __init__(
        self,
        make_engine: EngineFactory,
        *,
        use_tray: bool | None = None,
        history_s: float = 600.0,
    ) -> None:
        super().__init__()
        self.quitting = False
        self.controller = AppController(make_engine, self)
        self.history = PathHistory(span_s=history_s)
        self.graph = PathGraphWindow(self.history)
        self.errors = ErrorPresenter(self)
        # The history is fed first, so every view drawing a snapshot finds it there.
        self.controller.snapshot_changed.connect(self._record)
        self.controller.error.connect(self.errors.show)
        self.log_view: LogView | None = None  # made on first "Show log"
        self.apps: AppsWindow | None = None  # made on first "Apps…"
        self.settings: SettingsDialog | None = None  # made on first "Settings…"
        self.menu = ControlMenu(self.controller, self.show_paths, self.quit,
                                on_log=self.show_log, on_autostart=self.set_autostart,
                                on_apps=self.show_apps, on_settings=self.show_settings)
        if use_tray is None:
            use_tray = QSystemTrayIcon.isSystemTrayAvailable()
        self.tray: TrayView | None = None
        self.window: MainWindow | None = None
        if use_tray:
            self.tray = TrayView(self.controller, self.menu, self.toggle_paths)
        else:
            self.window = MainWindow(self.controller, self.show_paths, self.quit,
                                     on_log=self.show_log, on_autostart=self.set_autostart,
                                     on_apps=self.show_apps, on_settings=self.show_settings)
            self.errors.parent_widget = self.window
            self.window.show()

    def _record(self, snapshot: EngineSnapshot) -> None:
        self.history.add(snapshot)
        self.graph.show_snapshot(snapshot)

    def show_paths(self) -> None:
        _bring_up(self.graph)

    def show_log(self) -> None:
        if self.log_view is None:
            self.log_view = LogView(logs.log_path())
        _bring_up(self.log_view)

    def show_apps(self) -> None:
        if self.apps is None:
            self.apps = AppsWindow(self.controller, AppClasses(), self.errors.show)
        _bring_up(self.apps)

    def show_settings(self) -> None:
        """The settings of the profile connected now (else the first one), as saved."""
        if self.settings is None:
            self.settings = SettingsDialog(ProfileStore(), self.controller.latest.profile)
        else:
            self.settings.refresh_profiles(self.controller.latest.profile)
        _bring_up(self.settings)

    def set_autostart(self, on: bool) -> None:
        """The "Start at login" tick: write or remove the autostart entry; if that fails,
        say why and show the tick as it really is."""
        try:
            autostart.set_enabled(on)
            log.info("start at login %s (%s)", "on" if on else "off", autostart.autostart_path())
        except BraidError as exc:
            self.errors.show(UserMessage.from_error(exc))
        self.menu.refresh_autostart()
        if self.window is not None:
            self.window.refresh_autostart()

    def toggle_paths(self) -> None:
        if self.graph.on_screen():
            self.graph.hide()
        else:
            self.show_paths()

    def connect_named(self, name: str) -> None:
        """Connect to the target whose profile (or menu label) is `name`."""
        targets = self.controller.targets()
        for target in targets:
            if name in (target.profile, target_label(target)):
                self.controller.request_connect(target)
                return
        known = ", ".join(target_label(t) for t in targets) or "none"
        raise BraidError(
            f"no profile named {name!r} (profiles: {known})",
            "pick one of those, or create it with `braid import FILE` or `braid lab up`",
        )

    def quit(self) -> None:
        """Disconnect cleanly (tunnels gone before this returns), then leave."""
        if self.quitting:
            return
        self.quitting = True
        self.graph.hide()
        for view in (self.log_view, self.apps, self.settings):
            if view is not None:
                view.hide()
        if self.tray is not None:
            self.tray.hide()
        if self.window is not None:
            self.window.hide()
        self.errors.close_all()
        self.controller.shutdown()
        log.info("the app quit")
        QApplication.quit()


def _bring_up(window: QWidget) -> None:
    # Un-minimize (keeping maximized, if it was): "Paths…" or "Show log" must bring the
    # window into view, not just flash its taskbar entry.
    window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
    window.show()
    window.raise_()
    window.activateWindow()


def _route_signals_to(app: BraidApp) -> QTimer:
    """SIGINT/SIGTERM quit cleanly. Python runs signal handlers only between bytecodes,
    and Qt's loop runs in C++, so a slow timer gives the interpreter a turn."""

    def handler(_signum: int, _frame: Any) -> None:
        QTimer.singleShot(0, app.quit)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    timer = QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(250)
    return timer


def run(
    make_engine: EngineFactory,
    *,
    use_tray: bool | None = None,
    connect: str | None = None,
    show_paths: bool = False,
) -> int:
    qt = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt, QApplication)
    qt.setApplicationName("Braid")
    qt.setApplicationVersion(package_version())
    qt.setDesktopFileName("braid")
    qt.setWindowIcon(state_icon(None))
    # The tray app lives on with every window closed.
    qt.setQuitOnLastWindowClosed(False)
    app = BraidApp(make_engine, use_tray=use_tray)
    install_excepthook(app.errors)
    _keep = _route_signals_to(app)
    log.info("Braid %s: the app is up (%s)", package_version(),
             "in the tray" if app.tray is not None else "in a window: no system tray")
    try:
        if not connect:
            app.controller.attach_running()
        if connect:
            try:
                app.connect_named(connect)
            except BraidError as exc:
                # The app stays up: the user can pick another profile from the menu.
                app.errors.show(UserMessage.from_error(exc))
        if show_paths:
            app.show_paths()
        rc = qt.exec()
    finally:
        app.controller.shutdown()
    del _keep
    return rc
