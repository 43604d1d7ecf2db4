"""One icon per connection state, from the SVGs under resources/icons.

resources/ at the top of the repository is where the assets live; app/ui/resources is
a symlink to it, so they are package data: a wheel (and so any install) carries them
inside the package, and they are found the same way from a source checkout, an
editable install or an installed one.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon

from app.core.errors import BraidError
from app.core.model import ConnState

# A plain directory in every supported install (QIcon needs a file path, so a zipped
# package would not do; pip never installs one).
ICON_DIR = Path(str(resources.files("app.ui").joinpath("resources", "icons")))


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
            "reinstall Braid (`pip install .` from its source); its icons are missing",
        )
    return icon
