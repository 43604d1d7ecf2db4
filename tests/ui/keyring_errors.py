"""Run by test_errors.py inside its own private keyring (scripts/with-keyring.sh), since
it locks that keyring: the real app and engine meet a profile whose key is missing, then
a locked keyring. Prints the error dialogs it saw as JSON, one list per case."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import secretstorage
from PySide6.QtWidgets import QApplication

from app.core.model import ConnState
from app.core.profiles.model import Profile
from app.core.profiles.store import ProfileStore
from app.core.secrets import KeyStore, key_user
from app.core.service import EngineService
from app.ui.app import BraidApp
from app.ui.qtwait import wait_for
from tests.core.test_profiles import make_gateway


def dialogs_on_connect(braid: BraidApp, profile: str) -> list[list[str]]:
    braid.errors.close_all()
    wait_for("the dialogs to close", lambda: not braid.errors.open_messages(), 10)
    before = len(braid.errors.shown)
    braid.connect_named(profile)
    c = braid.controller
    wait_for("an error", lambda: c.latest.state is ConnState.ERROR
             and c.latest.profile == profile, 30)
    wait_for("a dialog", lambda: len(braid.errors.shown) > before, 10)
    return [[m.what, m.fix] for m in braid.errors.open_messages()]


def main() -> int:
    os.environ["BRAID_CONFIG_DIR"] = tempfile.mkdtemp(prefix="braid-ui-errors-")
    qt = QApplication(sys.argv[:1])
    qt.setQuitOnLastWindowClosed(False)
    store = ProfileStore()
    for name in ("nokey", "locked"):
        gw, keys = make_gateway("hk", 0)
        store.save(Profile(name=name, gateways=(gw,)), {"hk": keys})
    KeyStore().delete(key_user("nokey", "hk", "private"))

    braid = BraidApp(EngineService, use_tray=True)
    try:
        seen = {"nokey": dialogs_on_connect(braid, "nokey")}
        secretstorage.get_default_collection(secretstorage.dbus_init()).lock()
        seen["locked"] = dialogs_on_connect(braid, "locked")
        tooltip = braid.tray.icon.toolTip() if braid.tray else ""
    finally:
        braid.quit()
    print(json.dumps({"dialogs": seen, "tooltip": tooltip}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
