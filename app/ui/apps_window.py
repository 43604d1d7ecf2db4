"""The Apps window: the per-application priority toggles (docs/classes.md).

It lists the apps with TCP/UDP sockets open now (sock_diag, app/core/apps.py), each with
the class its processes are in and the path that class takes now, then the saved rules
of programs that are not running. A selector per app pins it to a class or unpins it at
once: the same functions as `braid pin`/`braid unpin` (app/core/classes.py: the rule
saved to rules.toml, sent to the helper, the running processes moved). A program that is
not running gets a rule from its path, a command or a .desktop file.

A socket keeps the class it was opened in, so the window says so, and after a move it
shows the command that restarts the app (its new sockets are in the class, not the old).

While on screen it lists the apps again every REFRESH_MS (a scan of /proc and one
sock_diag dump: a few ms); hidden, its timer stops and it costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core import present
from app.core.classes import CHOICES, AppClasses, AppRow, Pinned, said
from app.core.errors import BraidError
from app.core.present import UserMessage
from app.ui.controller import AppController
from app.ui.icons import state_icon
from app.wire.classes import APP_CLASSES

REFRESH_MS = 2000
COLUMNS = ("App", "Class now", "Rule", "Sockets", "PIDs", "Program")
RULE_COLUMN = COLUMNS.index("Rule")
SOCKET_NOTE = ("A socket keeps the class it was opened in: an app moved while it runs "
               "sends its new connections in its class, and the ones it already has stay "
               "where they are. Restart the app to move all of them.")
APPS_DIR = "/usr/share/applications"


class AppsWindow(QWidget):
    def __init__(self, controller: AppController, model: AppClasses,
                 on_error: Callable[[UserMessage], None], *,
                 refresh_ms: int = REFRESH_MS) -> None:
        super().__init__()
        self._controller = controller
        self.model = model
        self._on_error = on_error
        self.setWindowTitle("Braid — Apps")
        self.setWindowIcon(state_icon(None))
        self.resize(920, 460)
        self.rows: list[AppRow] = []  # what the table shows, top to bottom
        self.refreshes = 0  # times the apps were listed (the tests and the benchmark read it)
        self.restart: str | None = None  # the last move's restart command, if any

        heading = QLabel("Apps with network activity now, and their traffic class. A class "
                         "chosen here is saved as a rule (applied whenever the app starts) "
                         "and moves the app's running processes at once.")
        heading.setWordWrap(True)
        self.note = QLabel(SOCKET_NOTE)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8d6e00")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QPushButton("Copy restart command")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self._copy_restart)

        self.add_edit = QLineEdit()
        self.add_edit.setPlaceholderText("a program's path (/usr/bin/zoom), a command on "
                                         "PATH, or a .desktop file")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        self.add_class = QComboBox()
        self.add_class.addItems(list(APP_CLASSES))
        self.add_button = QPushButton("Add rule")
        self.add_button.clicked.connect(self._add_clicked)
        self.add_edit.returnPressed.connect(self._add_clicked)

        status_row = QHBoxLayout()
        status_row.addWidget(self.status, stretch=1)
        status_row.addWidget(self.copy_button)
        add_row = QHBoxLayout()
        add_row.addWidget(QLabel("An app that is not running:"))
        add_row.addWidget(self.add_edit, stretch=1)
        add_row.addWidget(self.browse_button)
        add_row.addWidget(self.add_class)
        add_row.addWidget(self.add_button)
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(self.note)
        layout.addWidget(self.table, stretch=1)
        layout.addLayout(status_row)
        layout.addLayout(add_row)

        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)

    # -- listing -------------------------------------------------------------------
    @property
    def lab(self) -> str | None:
        """Where the apps are: the lab the app is connected to (its client namespace and
        helper), else this machine."""
        return self._controller.latest.lab

    def refresh(self) -> None:
        """List the apps again and show what changed."""
        if self.isMinimized():
            return  # nobody sees it: the timer's tick costs nothing
        self.refreshes += 1
        try:
            rows = self.model.rows(self.lab)
        except BraidError as exc:
            # Every REFRESH_MS: a line in the window, not a dialog each time.
            self._say([f"cannot list the apps: {exc.what} ({exc.fix})"])
            return
        if [r.exe for r in rows] != [r.exe for r in self.rows]:
            self._rebuild(rows)
        else:
            for i, row in enumerate(rows):
                self._fill(i, row)
        self.rows = rows

    def _rebuild(self, rows: list[AppRow]) -> None:
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for col in range(len(COLUMNS)):
                if col != RULE_COLUMN:
                    self.table.setItem(i, col, QTableWidgetItem())
            combo = QComboBox()
            combo.addItems(list(CHOICES))
            combo.setToolTip("the class its rule gives it; none: no rule")
            # activated: the user's choice only, not the window setting what is true.
            combo.activated.connect(lambda index, c=combo: self._chosen(c, index))
            self.table.setCellWidget(i, RULE_COLUMN, combo)
            self._fill(i, row, force=True)

    def _fill(self, i: int, row: AppRow, *, force: bool = False) -> None:
        texts = (row.name, self._class_now(row), "", str(row.sockets) if row.running else "",
                 " ".join(map(str, row.pids)), row.exe)
        for col, text in enumerate(texts):
            item = self.table.item(i, col)
            if item is not None and (force or item.text() != text):
                item.setText(text)
        combo = self.combo(i)
        combo.setProperty("exe", row.exe)
        if combo.currentText() != row.choice:
            combo.blockSignals(True)
            combo.setCurrentText(row.choice)
            combo.blockSignals(False)

    def _class_now(self, row: AppRow) -> str:
        if not row.running:
            return "not running"
        if row.cls is None:
            return "—"  # in no class group: the selectors, volume or default decide
        snapshot = self._controller.latest
        if row.cls in snapshot.classes:  # connected: the path(s) its class takes now
            return f"{row.cls} (via {present.class_carriers(snapshot, row.cls)})"
        return row.cls

    def combo(self, i: int) -> QComboBox:
        widget = self.table.cellWidget(i, RULE_COLUMN)
        assert isinstance(widget, QComboBox)
        return widget

    def row_of(self, exe: str) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.exe == exe), None)

    # -- choices -------------------------------------------------------------------
    def choose(self, exe: str, choice: str) -> None:
        """Pin (a class) or unpin ("none") the app ``exe``, as its selector does."""
        lab = self.lab
        self._apply(lambda: self.model.choose(exe, choice, lab),
                    None if choice not in APP_CLASSES else choice)

    def _chosen(self, combo: QComboBox, index: int) -> None:
        self.choose(str(combo.property("exe")), CHOICES[index])

    def _add_clicked(self) -> None:
        app = self.add_edit.text().strip()
        if not app:
            self._say(["name the program first: its path, a command or a .desktop file"])
            return
        cls = self.add_class.currentText()
        lab = self.lab
        if self._apply(lambda: self.model.add(app, cls, lab), cls):
            self.add_edit.clear()

    def _apply(self, work: Callable[[], Pinned | None], cls: str | None) -> bool:
        try:
            done = work()
        except BraidError as exc:
            self._on_error(UserMessage.from_error(exc))
            self.refresh()  # the selector shows what is true again
            return False
        if done is None:
            self._say(["no rule to remove"])
        else:
            head = (f"{done.rule.exe} is {done.rule.cls}" if done.rule is not None else
                    f"{done.replaced.exe} has no rule now" if done.replaced else "")
            self._say([head, *said(done, cls)], done.restart)
        self.refresh()
        return True

    def _say(self, lines: list[str], restart: str | None = None) -> None:
        self.status.setText("\n".join(line for line in lines if line))
        self.restart = restart
        self.copy_button.setEnabled(restart is not None)

    def _copy_restart(self) -> None:
        if self.restart is not None:
            QGuiApplication.clipboard().setText(self.restart)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "A program or a .desktop file", APPS_DIR,
            "Programs and launchers (*);;Launchers (*.desktop)")
        if path:
            self.add_edit.setText(path)

    # -- on screen only --------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        self.refresh()
        self.timer.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)
