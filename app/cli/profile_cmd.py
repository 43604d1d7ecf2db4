"""Subcommands (placeholder until this area lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """Add this area's subcommands to ``sub``; each sets ``handler`` (args -> exit code)."""
