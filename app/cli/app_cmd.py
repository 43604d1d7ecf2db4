"""`braid` with no command (or `braid app`): the tray app."""

from __future__ import annotations

import argparse
import os
from typing import Any

from app.core.errors import BraidError
from app.core.targets import DEFAULT_LAB, lab_profile_name


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """`braid` alone starts the tray app; `braid app` does too, with options."""
    parser = sub.add_parser(
        "app",
        help="start the tray app (what `braid` with no command does), with options",
        description=(
            "Start the tray app: a tray icon whose colour says how the connection is, a menu "
            "to connect and disconnect, and the live path graph window. Where the desktop "
            "has no system tray, a small window with the same controls opens instead."
        ),
    )
    parser.add_argument(
        "--connect", metavar="PROFILE",
        help="connect to PROFILE at start (a lab's profile is lab-<lab>)",
    )
    parser.add_argument(
        "--lab", metavar="LAB", nargs="?", const=DEFAULT_LAB,
        help="connect to the lab LAB at start (default lab: `lab`); same as --connect lab-LAB",
    )
    parser.add_argument(
        "--paths", action="store_true", help="open the path graph window at start"
    )
    parser.add_argument(
        "--no-tray", action="store_true",
        help="use the small main window even where a system tray exists",
    )
    parser.set_defaults(handler=run_tray)


def run_tray(args: argparse.Namespace) -> int:
    if not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise BraidError(
            "there is no display to show the tray app on (neither DISPLAY nor WAYLAND_DISPLAY "
            "is set)",
            "run Braid without a display with `braid up --lab` or `braid up --profile P`, "
            "and watch it with `braid status --watch`",
        )
    # Imported here: `braid --help` and the headless commands must not load Qt.
    from app.core.service import EngineHub
    from app.ui.app import run

    connect: str | None = getattr(args, "connect", None)
    lab: str | None = getattr(args, "lab", None)
    if connect and lab:
        raise BraidError("--connect and --lab both name a profile", "give only one of them")
    if lab:
        connect = lab_profile_name(lab)
    return run(
        EngineHub,
        use_tray=False if getattr(args, "no_tray", False) else None,
        connect=connect,
        show_paths=bool(getattr(args, "paths", False)),
    )
