"""No key in any log: a verbose import and a verbose lab connection, then every log
file they wrote is scanned for every key involved, in every form a key takes on its way
(base64 as in a .conf file, hex as WireGuard's UAPI writes it)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core import logs
from app.lab.topology import LabInfo
from tests.util import unique_name, wait_until, wg_keypair, wg_psk

REPO = Path(__file__).resolve().parents[2]


def key_forms(key: str) -> set[str]:
    raw = base64.b64decode(key)
    return {key, key.rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("="),
            raw.hex(), raw.hex().upper()}


def test_verbose_import_and_connection_leave_no_key_in_any_log(
        tmp_path: Path, config_dir: Path, make_lab: Callable[..., LabInfo],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.VERBOSE_ENV, "1")  # the lab's helper too
    lab = make_lab("clean")  # its profile lands in this test's config dir
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"),
           "BRAID_RUNTIME_DIR": str(tmp_path / "run"), logs.VERBOSE_ENV: "1"}

    def braid(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "app.cli.main", "-v", *argv],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        assert done.returncode == 0, f"braid {' '.join(argv)}: {done.stderr}"
        return done

    private, _ = wg_keypair()
    _, peer_public = wg_keypair()
    psk = wg_psk()
    conf = tmp_path / "hk.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {private}\nAddress = 198.19.1.2/32\n"
                    f"[Peer]\nPublicKey = {peer_public}\nPresharedKey = {psk}\n"
                    "Endpoint = 198.18.0.1:51001\nAllowedIPs = 0.0.0.0/0\n")
    profile = unique_name("leak", 6)
    braid("import", str(conf), "--profile", profile)
    braid("profile", "show", profile)

    braid("up", "--lab", lab.name)  # the engine runs on in the background, verbose too
    try:
        wait_until(lambda: json.loads(braid("status", "--json").stdout)["state"]
                   == "connected", timeout=30, message="braid up --lab never connected")
        braid("status", "--lab", lab.name)
    finally:
        braid("down")

    written = list((tmp_path / "state" / "braid").iterdir())
    written += sorted((tmp_path / "run").rglob("*.log"))  # the background engine's stderr
    written += sorted((lab.runtime_dir / "log").glob("*.log"))  # the lab's helper, as
    # journald gets it, its wireguard-go processes, the relay
    assert lab.runtime_dir / "log" / "helper.log" in written
    texts = {p: p.read_text(errors="replace") for p in written}
    braid_log = texts[tmp_path / "state" / "braid" / "braid.log"]
    # The real thing, at debug level: the engine's connection is in it, and debug lines.
    assert " DEBUG " in braid_log and "-> connected" in braid_log, braid_log[-3000:]
    assert " DEBUG " in texts[lab.runtime_dir / "log" / "helper.log"]

    keys = {"imported private key": private, "imported preshared key": psk}
    keys |= {f"lab {g.name} client key": g.client_private_key for g in lab.gateways}
    for what, key in keys.items():
        for form in key_forms(key):
            for path, text in texts.items():
                assert form not in text, f"{what} ({form[:6]}...) in {path}"
