"""Start at login, by the user's choice: an XDG autostart entry, written or removed.

The entry is ``$XDG_CONFIG_HOME/autostart/braid.desktop`` (``~/.config/autostart``), the
place every XDG desktop (GNOME, KDE, Xfce, LXQt, ...) starts programs from at login. It
is the launcher (resources/braid.desktop, the file the .deb puts in
/usr/share/applications) with ``Exec`` pointing at the program that is running now, so
that what the user ticked is what starts: the .deb's /usr/bin/braid, a checkout's
venv, or the PyInstaller bundle. Nothing is written unless the user asks; Braid never
turns it on by itself. No Qt here: the menu and the main window call it.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from app.core.errors import BraidError
from app.wire.files import write_atomically

ENTRY_NAME = "braid.desktop"
# Characters the Desktop Entry spec says an Exec argument must be quoted for.
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def autostart_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "autostart" / ENTRY_NAME


def launcher_text() -> str:
    return resources.files("app.ui").joinpath("resources", ENTRY_NAME).read_text("utf-8")


def _exec_arg(arg: str) -> str:
    if not _RESERVED.intersection(arg):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def launch_command() -> list[str]:
    """How to start the app that is running now, as an argv."""
    if getattr(sys, "frozen", False):  # the PyInstaller bundle: its own executable
        return [sys.executable, "app"]
    found = shutil.which("braid")
    if found:
        return [found, "app"]
    return [sys.executable, "-m", "app.cli.main", "app"]


def entry_text(argv: list[str] | None = None) -> str:
    command = " ".join(_exec_arg(a) for a in (argv or launch_command()))
    lines = []
    for line in launcher_text().splitlines():
        if line.startswith("Exec="):
            line = f"Exec={command}"
        elif line.startswith("TryExec="):
            continue  # the Exec path is absolute: it either runs or the entry is stale
        lines.append(line)
    lines.append("X-GNOME-Autostart-enabled=true")
    return "\n".join(lines) + "\n"


def enabled() -> bool:
    return autostart_path().is_file()


def set_enabled(on: bool) -> None:
    """Write or remove the entry. Raises BraidError (what, what to do) if it cannot."""
    path = autostart_path()
    try:
        if on:
            write_atomically(path, entry_text(), mode=0o644, durable=False, dir_mode=0o755)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise BraidError(
            f"cannot {'write' if on else 'remove'} {path}: {exc.strerror}",
            f"check that {path.parent} is yours and writable",
        ) from exc
