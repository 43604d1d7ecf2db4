"""Errors reach the user as dialogs saying what to do: the real app and engine, with a
profile whose key is missing and with a locked keyring (a helper that is not running is
in test_integration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_missing_key_and_locked_keyring_are_dialogs_saying_what_to_do() -> None:
    # Not the session's keyring: this one gets locked. with-keyring.sh starts a private
    # one when no Secret Service answers on the bus, so the bus is taken away.
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    out = subprocess.run(
        [str(REPO / "scripts" / "with-keyring.sh"), sys.executable, "-m",
         "tests.ui.keyring_errors"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    dialogs = result["dialogs"]

    ((what, fix),) = dialogs["nokey"]
    assert "nokey" in what and "key" in what
    assert "braid import" in fix

    ((what, fix),) = dialogs["locked"]
    assert what.startswith("the keyring is locked")
    assert fix.startswith("unlock your keyring")
    assert result["tooltip"].splitlines() == ["Braid — Error · locked", what]
