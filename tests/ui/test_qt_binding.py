"""Guards the PySide6 pin in pyproject.toml: PySide6-Essentials 6.12.0 drops a reference
to True on every signal emit, so on Python 3.11 (bools are not immortal) a running app
aborts with "bool_dealloc: deallocating True or False" after a few thousand emits."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(object)


def test_signal_emission_keeps_bool_refcounts() -> None:
    emitter = _Emitter()
    received: list[object] = []
    emitter.fired.connect(received.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(500):
        emitter.fired.emit(i)
    assert (sys.getrefcount(True), sys.getrefcount(False)) == before
    assert len(received) == 500
