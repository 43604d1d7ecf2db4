"""`braid` with no command: the tray app."""

from __future__ import annotations

import argparse
from typing import Any

from app.core.errors import BraidError


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """The tray app has no subcommand of its own: `braid` alone starts it."""


def run_tray(args: argparse.Namespace) -> int:
    raise BraidError("the tray app is not built yet", "use `braid up` and `braid status`")
