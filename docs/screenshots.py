"""Screenshots for the docs: the app on a real lab, on a real X display with a tray.

Run by scripts/screenshots.sh (as `python3 docs/screenshots.py`), which provides the
display (Xvfb), the tray host (trayer) and a keyring. It lives here, not in app/ui,
because it builds labs: app/ui holds no network logic. It builds a lab, connects to
it through the app, lets the graph fill, takes a path down so the graph shows a switch, then saves:
  paths.png   the path graph window
  tray.png    the tray with its menu open (opened by a real right click, xdotool)
  window.png  the small main window used where there is no tray
"""

from __future__ import annotations

import argparse
import secrets
import string
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget

import app.lab.register  # noqa: F401  (lab targets, as the CLI has them)
from app.core.errors import BraidError
from app.core.model import ConnState
from app.core.service import EngineHub
from app.lab import control, topology
from app.ui.app import BraidApp
from app.ui.main_window import MainWindow
from app.ui.qtwait import wait_for

CONNECTED = (ConnState.CONNECTED, ConnState.DEGRADED)


def settle(seconds: float) -> None:
    """Let the app run (and the engine probe) for a while."""
    end = time.monotonic() + seconds
    wait_for(f"{seconds:g} s to pass", lambda: time.monotonic() >= end, seconds + 5)


def grab_screen(rect: QRect, path: Path) -> None:
    screen = QGuiApplication.primaryScreen()
    if not screen.grabWindow(0, rect.x(), rect.y(), rect.width(), rect.height()).save(str(path)):
        raise BraidError(f"could not write {path}", "check that the directory is writable")


def save_widget(widget: QWidget, path: Path) -> None:
    if not widget.grab().save(str(path)):
        raise BraidError(f"could not write {path}", "check that the directory is writable")


def shoot(out: Path, scenario: str, history_s: float) -> None:
    lab = "s" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
    out.mkdir(parents=True, exist_ok=True)
    qt = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt, QApplication)
    qt.setQuitOnLastWindowClosed(False)
    wait_for("a system tray (is trayer running?)", QSystemTrayIcon.isSystemTrayAvailable, 10)
    topology.build(lab, scenario)
    braid = BraidApp(EngineHub, use_tray=True)
    try:
        tray = braid.tray
        assert tray is not None
        c = braid.controller
        braid.connect_named(f"lab-{lab}")
        wait_for("the connection", lambda: c.latest.state in CONNECTED, 30)
        braid.show_paths()
        braid.graph.resize(1100, 820)
        settle(history_s * 0.6)
        active = c.latest.classes["default"][0]
        print(f"taking {active} down", flush=True)
        control.impair(lab, active, {"down": True})
        wait_for("a failover", lambda: c.latest.classes.get("default", (active,))[:1]
                 not in ((), (active,)), 20)
        settle(history_s * 0.25)
        print(f"bringing {active} back", flush=True)
        control.impair(lab, active, {"down": False})
        settle(history_s * 0.15)
        save_widget(braid.graph, out / "paths.png")

        window = MainWindow(c, braid.show_paths, lambda: None, on_log=braid.show_log,
                            on_autostart=lambda _on: None)
        window.resize(420, 220)
        window.show()
        wait_for("the main window", window.isVisible, 5)
        save_widget(window, out / "window.png")
        window.hide()
        braid.graph.hide()

        wait_for("the tray icon to be placed", lambda: tray.icon.geometry().isValid(), 10)
        icon = tray.icon.geometry()
        subprocess.run(["xdotool", "mousemove", str(icon.center().x()), str(icon.center().y()),
                        "click", "3"], check=True)
        wait_for("the tray menu", braid.menu.isVisible, 10)
        # Qt opens it at the pointer, over the icon; a desktop panel would drop it below.
        screen = QGuiApplication.primaryScreen().geometry()
        braid.menu.move(min(icon.right(), screen.right()) - braid.menu.width() + 1,
                        icon.bottom() + 4)
        settle(0.5)  # let the menu finish painting before the grab
        menu = braid.menu.geometry()
        area = menu.united(icon).adjusted(-260, -8, 8, 24).intersected(screen)
        grab_screen(area, out / "tray.png")
        braid.menu.hide()
    finally:
        braid.quit()
        topology.destroy(lab)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--scenario", default="clean", help="lab scenario (default: clean)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long the graph runs before the shot (default: 60)")
    args = parser.parse_args(argv)
    try:
        shoot(args.out, args.scenario, args.seconds)
    except BraidError as exc:
        print(f"screenshots: error: {exc}", file=sys.stderr)
        return 2
    for name in ("paths.png", "tray.png", "window.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
