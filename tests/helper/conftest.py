"""Fixtures for the helper's tests: one lab per module, one helper per test.

The helper runs where it runs in a lab: inside ``braid-<lab>-client``, started by
``ip netns exec`` like any daemon. Everything is named after the lab (``t`` + 4 random
characters), so other engineers' labs running at the same time are never touched.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.core.helper_client import HelperStatus, SyncHelperClient
from app.helper import uapi
from app.lab import topology
from app.lab.topology import LabInfo
from tests.faults import ns_run
from tests.util import wait_until

REPO = Path(__file__).resolve().parents[2]


def lab_name() -> str:
    return "t" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4))


@dataclass
class Helper:
    """A braid-helper process in a lab's client namespace."""

    lab: LabInfo
    socket: Path
    state_dir: Path
    log: Path
    grace: float = 30.0
    extra: tuple[str, ...] = ()  # more braid-helper options
    proc: subprocess.Popen[bytes] | None = None
    clients: list[SyncHelperClient] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return topology.netns(self.lab.name, "client")

    def argv(self, *extra: str) -> list[str]:
        return [
            "ip", "netns", "exec", self.ns, sys.executable, "-m", "app.helper.main",
            "--socket", str(self.socket), "--state-dir", str(self.state_dir),
            "--grace-seconds", str(self.grace), *self.extra, *extra,
        ]  # fmt: skip

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv(), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_until(self._answers, 15, message=f"braid-helper never answered; log: {self.log}")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"braid-helper exited: {self.log.read_text()[-2000:]}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.socket))
            return True
        except OSError:
            return False

    def client(self) -> SyncHelperClient:
        c = SyncHelperClient(self.socket)
        self.clients.append(c)
        return c

    def sigterm(self) -> int:
        """SIGTERM, as systemd stops it; its exit status."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(20)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cleanup(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv("--cleanup"), cwd=REPO, capture_output=True, text=True, check=False
        )


@pytest.fixture(scope="module")
def lab() -> Iterator[LabInfo]:
    name = lab_name()
    info = topology.build(name, "clean", start_helper=False, write_profile=False)
    try:
        yield info
    finally:
        topology.destroy(name, forget_profile=False)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A directory an unprivileged test client can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="braid-helper-test-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def helper(lab: LabInfo, tmp_path: Path, sock_dir: Path) -> Iterator[Helper]:
    # The drift timer every second, not 5: tests that drift WireGuard's configuration
    # wait less, and every other test runs with the checks going on (a check that
    # "repaired" what was fine would show in their before/after comparisons).
    h = Helper(lab, sock_dir / "helper.sock", tmp_path / "state", tmp_path / "helper.log",
               extra=("--verify-seconds", "1"))
    h.start()
    try:
        yield h
    finally:
        h.stop()
        # Whatever a test did, leave the namespace clean for the next one.
        h.cleanup()


# ---- states ---------------------------------------------------------------------------
def lab_state(
    lab: LabInfo, gateways: tuple[str, ...] | None = None, *, marking: bool = True,
    persistent: bool = False, guard: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The state the engine would send for ``lab``: one tunnel, table and src rule per
    gateway, class default on the first gateway (mark rule + fail-closed rule); with
    ``guard``, that kill switch."""
    gws = [g for g in lab.gateways if gateways is None or g.name in gateways]
    tunnels, tables, rules = [], [], []
    for g in gws:
        tunnels.append(
            {
                "name": g.client_interface,
                "private_key": g.client_private_key,
                "addresses": [g.client_address],
                "mtu": 1380,
                "listen_port": None,
                "fwmark": 0x0F000000,
                "peers": [
                    {
                        "public_key": g.public_key,
                        "preshared_key": None,
                        "endpoint": g.endpoint,
                        "allowed_ips": ["0.0.0.0/0"],
                        "persistent_keepalive": 25,
                    }
                ],
            }
        )
        table = 52001 + g.index
        hop = {"dev": g.client_interface, "weight": 1}
        tables.append({"id": table, "routes": [{"dst": "0.0.0.0/0", "nexthops": [hop]}]})
        rules.append(
            {"priority": 5200 + g.index, "src": g.client_address, "fwmark": None, "fwmask": None,
             "action": "lookup", "table": table}
        )  # fmt: skip
    doc: dict[str, Any] = {
        "persistent": persistent, "tunnels": tunnels, "tables": tables, "rules": rules,
        "marking": None, "guard": guard,
    }  # fmt: skip
    if marking and gws:
        first = 52001 + gws[0].index
        rules += [
            {"priority": 5250, "src": None, "fwmark": 0x01000000, "fwmask": 0x0F000000,
             "action": "lookup", "table": first},
            {"priority": 5251, "src": None, "fwmark": 0x01000000, "fwmask": 0x0F000000,
             "action": "unreachable", "table": None},
        ]  # fmt: skip
        doc["marking"] = {
            "bypass_mark": 0x0F000000,
            "classes": [{"name": "default", "mark": 0x01000000}],
            "masquerade": True,
            "flush_marks": [],
        }
    return doc


def all_handshaken(status: HelperStatus, names: list[str]) -> bool:
    return all((t := status.tunnel(n)) is not None and t.handshake_age_s is not None for n in names)


# ---- what is in the kernel --------------------------------------------------------------
def kernel_dump(ns: str) -> dict[str, str]:
    """Everything the helper may touch, as text, for before/after comparisons."""
    nft = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-a", "list", "ruleset"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # Counters count traffic, not state (the marking table's count classified flows).
    nft = re.sub(r"packets \d+ bytes \d+", "packets - bytes -", nft)
    return {
        "links": ns_run(ns, "ip", "-d", "link", "show"),
        "addrs": ns_run(ns, "ip", "addr", "show"),
        "rules4": ns_run(ns, "ip", "-4", "rule", "show"),
        "rules6": ns_run(ns, "ip", "-6", "rule", "show"),
        "routes4": ns_run(ns, "ip", "-4", "route", "show", "table", "all"),
        "routes6": ns_run(ns, "ip", "-6", "route", "show", "table", "all"),
        "nft": nft,
    }


def wireguard_go_in(ns: str) -> dict[str, int]:
    """wireguard-go processes whose network namespace is ``ns``: iface -> pid."""
    target = os.stat(f"/run/netns/{ns}").st_ino
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if os.path.basename(argv[0]) != b"wireguard-go":
                continue
            if os.stat(entry / "ns" / "net").st_ino != target:
                continue
        except OSError:
            continue
        args = [a.decode() for a in argv if a]
        found[args[-1]] = int(entry.name)
    return found


def braid_leftovers(ns: str) -> list[str]:
    """Anything of Braid's in ``ns``: br-* links, rules 5200-5299, routes in tables
    52000-52099, the nft tables inet braid and inet braid_guard, wireguard-go
    processes."""
    left: list[str] = []
    for line in ns_run(ns, "ip", "-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("br-"):
            left.append(f"link {name}")
    for family in ("-4", "-6"):
        for line in ns_run(ns, "ip", family, "rule", "show").splitlines():
            prio = int(line.split(":")[0])
            if 5200 <= prio <= 5299:
                left.append(f"rule {line.strip()}")
        for line in ns_run(ns, "ip", family, "route", "show", "table", "all").splitlines():
            m = re.search(r"\btable (\d+)\b", line)
            if m and 52000 <= int(m.group(1)) <= 52099:
                left.append(f"route {line.strip()}")
    tables = ns_run(ns, "nft", "list", "tables").splitlines()
    left += [f"nft {t}" for t in ("table inet braid", "table inet braid_guard",
                                  "table ip braid_mptcp") if t in tables]
    left += [f"wireguard-go {k} ({v})" for k, v in wireguard_go_in(ns).items()]
    left += [f"mptcp endpoint {e}" for e in mptcp_endpoints(ns)]
    return left


def mptcp_endpoints(ns: str) -> list[str]:
    """Braid's MPTCP endpoints in ``ns`` (ids 200-231), as `ip mptcp endpoint` shows them."""
    out = []
    for line in ns_run(ns, "ip", "mptcp", "endpoint", "show").splitlines():
        m = re.search(r"\bid (\d+)\b", line)
        if m and 200 <= int(m.group(1)) <= 231:
            out.append(line.strip())
    return out


def raw_request(sock: Path, payload: bytes, timeout: float = 10.0) -> dict[str, Any] | None:
    """Send bytes as they are; return the first reply line, None if the helper closed."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
        buf = b""
        while not buf.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    return json.loads(buf) if buf.strip() else None


_PING = (
    "import sys, icmplib\n"
    "src = sys.argv[2] or None\n"
    "h = icmplib.ping(sys.argv[1], count=1, timeout=5, source=src, privileged=True)\n"
    "sys.exit(0 if h.is_alive else 1)\n"
)


def ping(ns: str, dst: str, src: str | None = None) -> None:
    """One ICMP echo from ``ns`` (icmplib: no ping binary needed), bound to ``src``."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", _PING, dst, src or ""],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"no echo reply from {dst} (src {src}) in {ns}: {done.stderr}"


def _public(private_hex: str) -> str:
    """The public half of a hex private key (`wg pubkey`, the key on stdin)."""
    private = base64.b64encode(bytes.fromhex(private_hex)).decode()
    return subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def device_configs(names: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each device's WireGuard configuration as `wg show` would tell it, over its UAPI
    socket: listen port, fwmark, the public half of its key, peers (public key, whether
    a preshared key is set, endpoint, allowed IPs, keepalive). Never a private key."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in names:
        reply = uapi.get(name)
        if reply is None:
            out[name] = None
            continue
        device: dict[str, Any] = {"peers": {}}
        peer: dict[str, Any] | None = None
        for line in reply.splitlines():
            key, _, value = line.partition("=")
            if key == "private_key":
                device["public_key"] = _public(value)
            elif key in ("listen_port", "fwmark") and peer is None:
                device[key] = value
            elif key == "public_key":
                peer = {"allowed_ips": []}
                device["peers"][value] = peer
            elif peer is not None and key == "preshared_key":
                peer["psk"] = value != "0" * 64
            elif peer is not None and key == "allowed_ip":
                peer["allowed_ips"].append(value)
            elif peer is not None and key in ("endpoint", "persistent_keepalive_interval"):
                peer[key] = value
        out[name] = device
    return out


_BRAID_LINE = re.compile(
    r"\bbr-|\btable 52\d\d\b|^52\d\d:|\btable inet braid(_guard)?\b")


def outside_braid(dump: dict[str, str]) -> dict[str, list[str]]:
    """A kernel_dump without what is Braid's (br-* links and their addresses, rules
    5200-5299, routes in tables 52000-52099, Braid's nft tables): what no request may
    ever change. Link indexes and nft handles renumber; lines are compared as sets."""
    out: dict[str, list[str]] = {}
    for key, text in dump.items():
        if key == "nft":
            kept, skip = [], False
            for line in text.splitlines():
                if line.startswith("table "):
                    skip = bool(_BRAID_LINE.search(line))
                if not skip:
                    kept.append(re.sub(r" # handle \d+", "", line))
            out[key] = kept
            continue
        blocks, cur = [], ""
        for line in text.splitlines():
            # links and addresses: a block per link; rules and routes: a line each
            if key not in ("links", "addrs") or re.match(r"^\d+: ", line):
                blocks.append(cur)
                cur = ""
            cur += line + "\n"
        blocks.append(cur)
        blocks = [re.sub(r"^\d+: ", "", b) for b in blocks]
        out[key] = sorted(b for b in blocks if b and not _BRAID_LINE.search(b))
    return out
