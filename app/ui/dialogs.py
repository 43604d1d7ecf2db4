"""Errors as dialogs: what went wrong and what to do, never a traceback on a terminal
nobody reads."""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox, QWidget

from app.core.present import UserMessage

log = logging.getLogger(__name__)


class ErrorPresenter(QObject):
    """Shows each error in a non-modal box (the engine keeps running underneath); the
    same error while its box is still open is not shown twice."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.parent_widget: QWidget | None = None
        self._open: dict[UserMessage, QMessageBox] = {}
        self.shown: list[UserMessage] = []  # every error shown, oldest first

    def show(self, message: UserMessage) -> None:
        log.error("%s (what to do: %s)", message.what, message.fix or "-")
        box = self._open.get(message)
        if box is None:
            box = QMessageBox(
                QMessageBox.Icon.Critical, "Braid", message.what,
                QMessageBox.StandardButton.Ok, self.parent_widget,
            )
            if message.fix:
                box.setInformativeText(f"What to do: {message.fix}")
            box.finished.connect(lambda _result, m=message: self._closed(m))
            self._open[message] = box
            self.shown.append(message)
        box.show()
        box.raise_()

    def _closed(self, message: UserMessage) -> None:
        box = self._open.pop(message, None)
        if box is not None:
            box.deleteLater()

    def open_messages(self) -> list[UserMessage]:
        return list(self._open)

    def close_all(self) -> None:
        for box in list(self._open.values()):
            box.close()


def install_excepthook(presenter: ErrorPresenter) -> None:
    """A bug in a slot becomes a dialog (and a log line with the traceback) instead of
    vanishing: Qt would otherwise print it to a terminal the user never sees."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        presenter.show(UserMessage.from_error(exc))

    sys.excepthook = hook
