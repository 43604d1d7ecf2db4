"""The tray icon: state at a glance, a tooltip with the active path, the control menu,
and desktop notifications."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QSystemTrayIcon

from app.core import present
from app.core.model import ConnState, EngineSnapshot
from app.ui.controller import AppController
from app.ui.icons import state_icon
from app.ui.menu import ControlMenu

NOTICE_MS = 10_000


class TrayView(QObject):
    def __init__(
        self, controller: AppController, menu: ControlMenu, on_activate: Callable[[], None]
    ) -> None:
        super().__init__(controller)
        self.menu = menu
        self.icon = QSystemTrayIcon(state_icon(ConnState.DISCONNECTED), self)
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(self._activated)
        self._on_activate = on_activate
        self.state: ConnState | None = None
        self.notices: list[present.Notice] = []  # shown so far, newest last
        controller.snapshot_changed.connect(self.show_snapshot)
        controller.notice.connect(self.notify)
        self.show_snapshot(controller.latest)
        self.icon.show()

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        if snapshot.state is not self.state:
            self.state = snapshot.state
            self.icon.setIcon(state_icon(snapshot.state))
        text = present.tooltip(snapshot)
        if self.icon.toolTip() != text:
            self.icon.setToolTip(text)

    def notify(self, notice: present.Notice) -> None:
        self.notices.append(notice)
        kind = (
            QSystemTrayIcon.MessageIcon.Critical
            if notice.critical
            else QSystemTrayIcon.MessageIcon.Information
        )
        self.icon.showMessage(notice.title, notice.message, kind, NOTICE_MS)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self._on_activate()

    def hide(self) -> None:
        self.icon.hide()
