"""The "Show log" window: a read-only view of the tail of Braid's log file.

It shows the last 256 kB of the file (app/core/logs.py: ``read_tail``), newest at the
bottom, and follows the file while it is on screen: once a second it looks at the file's
size and identity and reads the tail again only when they changed (a rotation included).
While hidden it does nothing. Scrolled up, it keeps the place; at the bottom, it stays
at the bottom as lines come.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontDatabase, QHideEvent, QShowEvent
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from app.core.logs import read_tail
from app.ui.icons import state_icon
from app.wire.version import package_version

TAIL_BYTES = 256_000
REFRESH_MS = 1000


class LogView(QWidget):
    def __init__(self, path: Path, *, refresh_ms: int = REFRESH_MS,
                 tail_bytes: int = TAIL_BYTES) -> None:
        super().__init__()
        self.path = path
        self.tail_bytes = tail_bytes
        self.setWindowTitle("Braid — log")
        self.setWindowIcon(state_icon(None))
        self.resize(900, 480)
        self.heading = QLabel(f"Braid {package_version()} · {path}")
        self.heading.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.text)
        self._seen: tuple[int, int, int] | None = None
        self._follow = True  # at the bottom, following new lines; False once scrolled up
        self._loading = False
        bar = self.text.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)
        self.reloads = 0  # times the text was read again (the tests watch it)
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)

    def _identity(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0, -1)
        return (st.st_dev, st.st_ino, st.st_size)

    def refresh(self) -> bool:
        """Read the tail again if the file changed; True if it did."""
        seen = self._identity()
        if seen == self._seen:
            return False
        self._seen = seen
        bar = self.text.verticalScrollBar()
        kept, follow = bar.value(), self._follow
        text = read_tail(self.path, self.tail_bytes)
        if not text:
            text = f"Nothing logged yet: {self.path} is empty or not there."
        self._loading = True  # setPlainText scrolls to the top: not the user's doing
        self.text.setPlainText(text)
        self._loading = False
        self._follow = follow
        bar.setValue(bar.maximum() if follow else kept)
        self.reloads += 1
        return True

    def _scrolled(self, value: int) -> None:
        if not self._loading:
            self._follow = value >= self.text.verticalScrollBar().maximum()

    def _range_changed(self, _low: int, high: int) -> None:
        # The range grows when the text is laid out (after it was set, and first of all
        # after the window is shown): a view that follows goes along to the new end.
        if self._follow and not self._loading:
            self.text.verticalScrollBar().setValue(high)

    def showEvent(self, event: QShowEvent) -> None:
        self.refresh()
        self.timer.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)
