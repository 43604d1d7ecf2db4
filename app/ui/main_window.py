"""The small main window used where the desktop has no system tray: the tray menu's
controls as buttons, so Braid never silently does nothing."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core import present
from app.core.model import ConnState, EngineSnapshot
from app.ui import autostart
from app.ui.controller import AppController
from app.ui.icons import state_icon
from app.ui.menu import NO_TARGETS
from app.ui.port import target_label


class TargetCombo(QComboBox):
    """Lists the profiles afresh each time it opens, as the tray's submenu does."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:
        self._refresh()
        super().showPopup()


def _optional_button(text: str, callback: Callable[[], None] | None) -> QPushButton | None:
    if callback is None:
        return None
    button = QPushButton(text)
    button.clicked.connect(callback)
    return button


class MainWindow(QWidget):
    def __init__(
        self,
        controller: AppController,
        on_paths: Callable[[], None],
        on_quit: Callable[[], None],
        *,
        on_log: Callable[[], None] | None = None,
        on_autostart: Callable[[bool], None] | None = None,
        on_apps: Callable[[], None] | None = None,
        on_settings: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._controller = controller
        self._on_quit = on_quit
        self.setWindowTitle("Braid")
        self.setWindowIcon(state_icon(None))
        self.state: ConnState | None = None
        self.notices: list[present.Notice] = []

        self.icon_label = QLabel()
        self.headline = QLabel()
        self.path_line = QLabel()
        self.targets = TargetCombo(self.refresh_targets)
        self.targets.setMinimumWidth(220)
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self._connect_clicked)
        self.disconnect_button = QPushButton("Disconnect")
        self.disconnect_button.clicked.connect(controller.request_disconnect)
        self.classes = QLabel()
        self.notice_label = QLabel()
        self.notice_label.setWordWrap(True)
        self.paths_button = QPushButton("Paths…")
        self.paths_button.clicked.connect(on_paths)
        self.apps_button = _optional_button("Apps…", on_apps)
        self.settings_button = _optional_button("Settings…", on_settings)
        self.quit_button = QPushButton("Quit")
        self.quit_button.clicked.connect(on_quit)
        self.log_button = _optional_button("Show log", on_log)
        self.autostart_box: QCheckBox | None = None
        if on_autostart is not None:
            self.autostart_box = QCheckBox("Start at login")
            self.autostart_box.setChecked(autostart.enabled())
            self.autostart_box.toggled.connect(on_autostart)

        top = QHBoxLayout()
        top.addWidget(self.icon_label)
        text = QVBoxLayout()
        text.addWidget(self.headline)
        text.addWidget(self.path_line)
        top.addLayout(text, stretch=1)
        connect_row = QHBoxLayout()
        connect_row.addWidget(self.targets, stretch=1)
        connect_row.addWidget(self.connect_button)
        connect_row.addWidget(self.disconnect_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.paths_button)
        for button in (self.apps_button, self.settings_button):
            if button is not None:
                bottom.addWidget(button)
        if self.log_button is not None:
            bottom.addWidget(self.log_button)
        if self.autostart_box is not None:
            bottom.addWidget(self.autostart_box)
        bottom.addStretch(1)
        bottom.addWidget(self.quit_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(connect_row)
        layout.addWidget(self.classes)
        layout.addWidget(self.notice_label)
        layout.addLayout(bottom)

        controller.snapshot_changed.connect(self.show_snapshot)
        controller.notice.connect(self.notify)
        self.refresh_targets()
        self.show_snapshot(controller.latest)

    def refresh_autostart(self) -> None:
        if self.autostart_box is not None:
            self.autostart_box.blockSignals(True)
            self.autostart_box.setChecked(autostart.enabled())
            self.autostart_box.blockSignals(False)

    def refresh_targets(self) -> None:
        chosen = self.targets.currentData()
        self.targets.clear()
        targets = self._controller.targets()
        for target in targets:
            self.targets.addItem(target_label(target), target)
        if not targets:
            self.targets.addItem(NO_TARGETS, None)
        for i in range(self.targets.count()):
            if chosen is not None and self.targets.itemData(i) == chosen:
                self.targets.setCurrentIndex(i)
        self.connect_button.setEnabled(bool(targets))

    def _select_profile(self, profile: str | None) -> None:
        """Show the profile the engine is on (it may have been chosen elsewhere)."""
        for i in range(self.targets.count()):
            target = self.targets.itemData(i)
            if target is not None and profile is not None and target.profile == profile:
                self.targets.setCurrentIndex(i)

    def _connect_clicked(self) -> None:
        target: Any = self.targets.currentData()
        if target is not None:
            self._controller.request_connect(target)

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        if snapshot.state is not self.state:
            self.state = snapshot.state
            self.icon_label.setPixmap(state_icon(snapshot.state).pixmap(48, 48))
            self._select_profile(snapshot.profile)
        self.headline.setText(f"<b>{present.headline(snapshot)}</b>")
        self.path_line.setText("\n".join(present.tooltip(snapshot).splitlines()[1:]))
        copies = present.copies_line(snapshot)
        self.classes.setText("\n".join(present.class_lines(snapshot) + ([copies] if copies
                                                                        else [])))
        self.disconnect_button.setEnabled(snapshot.state is not ConnState.DISCONNECTED)

    def notify(self, notice: present.Notice) -> None:
        """No tray, so no desktop bubble: the latest notice stays in the window."""
        self.notices.append(notice)
        colour = "#c62828" if notice.critical else "#1b5e20"
        self.notice_label.setTextFormat(Qt.TextFormat.RichText)
        body = html.escape(notice.message).replace("\n", "<br>")
        self.notice_label.setText(
            f"<span style='color:{colour}'><b>{html.escape(notice.title)}</b></span><br>{body}"
        )
        # Grow to the whole notice: a fixed height cut it off at "...switched in".
        self.adjustSize()

    def closeEvent(self, event: QCloseEvent) -> None:
        # Without a tray this window is the app: closing it quits (and disconnects).
        self._on_quit()
        event.accept()
