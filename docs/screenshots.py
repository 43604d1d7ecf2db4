"""Screenshots for the docs: the app on a real lab, on a real X display with a tray.

Run by scripts/screenshots.sh (as `python3 docs/screenshots.py`), which provides the
display (Xvfb), the tray host (trayer) and a keyring. It lives here, not in app/ui,
because it builds labs: app/ui holds no network logic. It builds a lab, connects to
it through the app, lets the graph fill, takes a path down so the graph shows a switch, then saves:
  paths.png   the path graph window
  tray.png    the tray with its menu open (opened by a real right click, xdotool)
  window.png  the small main window used where there is no tray
  apps.png    the Apps window: two programs of the lab's client with sockets open, pinned
              from their selectors, and a rule for one that is not running
  settings.png the Settings dialog of the lab's profile
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
# An app with network activity: a UDP socket connected to the lab's far side, then it
# waits (what the Apps window lists).
APP = ("import socket, sys\n"
       "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((sys.argv[1], 9001))\n"
       "print('ready', flush=True); sys.stdin.read()\n")
APPS = ("video-call", "backup-sync")  # copies of Python under names a user would pin


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


@contextmanager
def lab_apps(lab: str, server: str) -> Iterator[dict[str, Path]]:
    """APPS running in the lab's client namespace, each with a socket open."""
    folder = Path(tempfile.mkdtemp(prefix="braid-shots-"))
    children: list[subprocess.Popen[str]] = []
    try:
        programs = {}
        # A script file, not -c: the restart command the window shows is one line.
        script = folder / "app.py"
        script.write_text(APP)
        for name in APPS:
            program = folder / name
            shutil.copy(os.path.realpath(sys.executable), program)
            programs[name] = program
            child = subprocess.Popen(["ip", "netns", "exec", topology.netns(lab, "client"),
                                      str(program), str(script), server],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            children.append(child)
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise BraidError(f"{name} did not start", "run it by hand to see why")
        yield programs
    finally:
        for child in children:
            child.kill()
            child.wait()
        shutil.rmtree(folder, ignore_errors=True)


def shoot_apps(braid: BraidApp, lab: str, out: Path) -> None:
    """apps.png: the lab's apps, two pinned from their selectors, one rule added for a
    program that is not running."""
    with lab_apps(lab, topology.load(lab).server_address) as programs:
        braid.show_apps()
        window = braid.apps
        assert window is not None
        window.resize(1060, 420)
        wait_for("the apps listed", lambda: all(
            window.row_of(str(p)) is not None for p in programs.values()), 10)
        window.choose(str(programs["video-call"]), "realtime")
        window.choose(str(programs["backup-sync"]), "bulk")
        window.add_edit.setText("/usr/bin/curl")
        window.add_class.setCurrentText("bulk")
        window.add_button.click()
        window.choose(str(programs["video-call"]), "realtime")  # its message last
        settle(0.5)
        save_widget(window, out / "apps.png")
        window.hide()


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

        # A fresh connection for the other shots, so the menu and the window show a
        # settled state rather than whatever the outage left.
        c.request_disconnect()
        wait_for("the disconnect", lambda: c.latest.state is ConnState.DISCONNECTED, 30)
        braid.connect_named(f"lab-{lab}")
        wait_for("the connection", lambda: c.latest.state is ConnState.CONNECTED, 60)
        settle(3.0)
        shoot_apps(braid, lab, out)
        braid.show_settings()
        assert braid.settings is not None
        settle(0.5)
        save_widget(braid.settings, out / "settings.png")
        braid.settings.hide()

        window = MainWindow(c, braid.show_paths, lambda: None, on_log=braid.show_log,
                            on_autostart=lambda _on: None, on_apps=braid.show_apps,
                            on_settings=braid.show_settings)
        window.resize(560, 220)
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
    for name in ("paths.png", "tray.png", "window.png", "apps.png", "settings.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
