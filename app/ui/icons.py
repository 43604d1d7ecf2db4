"""One icon per connection state, from the SVGs under resources/icons."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

from app.core.errors import BraidError
from app.core.model import ConnState

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
ICON_DIR = RESOURCES / "icons"


def icon_path(state: ConnState | None) -> Path:
    """The SVG for a state; None is the application's own icon."""
    name = "braid.svg" if state is None else f"braid-{state.value}.svg"
    return ICON_DIR / name


@cache
def state_icon(state: ConnState | None) -> QIcon:
    path = icon_path(state)
    icon = QIcon(str(path))
    if icon.isNull():
        # A broken install would otherwise show an invisible tray icon.
        raise BraidError(
            f"cannot load the icon {path}",
            "reinstall Braid; its resources/ directory is incomplete",
        )
    return icon
