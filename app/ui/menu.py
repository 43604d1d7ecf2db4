"""The control menu: the tray's context menu, with the same entries the no-tray main
window offers as buttons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from app.core import present
from app.core.model import ConnState, EngineSnapshot
from app.ui import autostart
from app.ui.controller import AppController
from app.ui.port import target_label

NO_TARGETS = "No profiles: run `braid import FILE` or `braid lab up`"


class ControlMenu(QMenu):
    def __init__(
        self,
        controller: AppController,
        on_paths: Callable[[], None],
        on_quit: Callable[[], None],
        parent: QWidget | None = None,
        *,
        on_log: Callable[[], None] | None = None,
        on_autostart: Callable[[bool], None] | None = None,
        on_apps: Callable[[], None] | None = None,
        on_settings: Callable[[], None] | None = None,
    ) -> None:
        super().__init__("Braid", parent)
        self._controller = controller
        self.header = self.addAction("Disconnected")
        self.header.setEnabled(False)
        self.addSeparator()
        self.connect_menu = self.addMenu("Connect")
        self.connect_menu.aboutToShow.connect(self.refresh_targets)
        self.disconnect_action = self.addAction("Disconnect")
        self.disconnect_action.triggered.connect(controller.request_disconnect)
        self._classes_start = self.addSeparator()
        self.class_actions: list[QAction] = []
        self._classes_end = self.addSeparator()
        self.paths_action = self.addAction("Paths…")
        self.paths_action.triggered.connect(on_paths)
        # Entries a caller may leave out (the view tests build a bare menu).
        self.apps_action = self._optional("Apps…", on_apps)
        self.settings_action = self._optional("Settings…", on_settings)
        self.log_action = self._optional("Show log", on_log)
        self.autostart_action: QAction | None = None
        if on_autostart is not None:
            self.autostart_action = self.addAction("Start at login")
            self.autostart_action.setCheckable(True)
            self.autostart_action.setChecked(autostart.enabled())
            self.autostart_action.toggled.connect(on_autostart)
            # Another Braid (or the user) may have changed it since: show what is true.
            self.aboutToShow.connect(self.refresh_autostart)
        self.quit_action = self.addAction("Quit")
        self.quit_action.triggered.connect(on_quit)
        self.target_actions: list[tuple[QAction, Any]] = []
        controller.snapshot_changed.connect(self.show_snapshot)
        self.show_snapshot(controller.latest)

    def _optional(self, text: str, callback: Callable[[], None] | None) -> QAction | None:
        if callback is None:
            return None
        action = self.addAction(text)
        action.triggered.connect(callback)
        return action

    def refresh_autostart(self) -> None:
        if self.autostart_action is not None:
            self.autostart_action.blockSignals(True)
            self.autostart_action.setChecked(autostart.enabled())
            self.autostart_action.blockSignals(False)

    def refresh_targets(self) -> None:
        """List the profiles afresh each time the submenu opens (a lab may have come up)."""
        self.connect_menu.clear()
        self.target_actions = []
        current = self._controller.latest
        connected = current.state is not ConnState.DISCONNECTED
        targets = self._controller.targets()
        for target in targets:
            action = self.connect_menu.addAction(target_label(target))
            action.setCheckable(True)
            action.setChecked(connected and current.profile == target.profile)
            action.triggered.connect(
                lambda _checked=False, t=target: self._controller.request_connect(t)
            )
            self.target_actions.append((action, target))
        if not targets:
            self.connect_menu.addAction(NO_TARGETS).setEnabled(False)

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        self.header.setText(present.headline(snapshot))
        self.disconnect_action.setEnabled(snapshot.state is not ConnState.DISCONNECTED)
        lines = present.class_lines(snapshot)
        copies = present.copies_line(snapshot, short=True)  # under the classes: realtime's
        lines += [copies] if copies else []
        if [a.text() for a in self.class_actions] == lines:
            return
        for action in self.class_actions:
            self.removeAction(action)
        self.class_actions = []
        for line in lines:
            action = QAction(line, self)
            action.setEnabled(False)  # information, not a command
            self.insertAction(self._classes_end, action)
            self.class_actions.append(action)
        self._classes_start.setVisible(bool(lines))
