"""A role's WireGuard devices: wireguard-go processes, configured over their UAPI.

A node's apply is a one-shot command, so nothing supervises the devices between two
applies: each device is found again by its name (its UAPI socket answers and its
wireguard-go runs in this network namespace), read back in full, and sent only the
lines that differ (app/helper/uapi.py's diff), so a re-apply sends nothing and a peer
that did not change keeps its session. If a wireguard-go dies, its device and the
routes into it go with it; the role's rules then close what went through it (see
plan.py) until the next apply starts it again.

Keys cross the UAPI socket and nothing else: not argv, env, logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path

from pyroute2 import AsyncIPRoute

from app.helper import netlink, procs, uapi
from app.node.errors import NodeError
from app.wire.state import PeerState, TunnelState

START_TIMEOUT = 10.0


def parse_config(iface: str, reply: str) -> TunnelState:
    """A device's whole configuration from a UAPI ``get=1`` reply (its private key too:
    it stays in memory, for the comparison)."""
    private_key, listen_port, fwmark = "", None, None
    peers: list[PeerState] = []
    cur: dict[str, list[str]] | None = None

    def close() -> None:
        if cur is None:
            return
        psk = cur.get("preshared_key", [uapi.ZERO_KEY_HEX])[0]
        keepalive = int(cur.get("persistent_keepalive_interval", ["0"])[0])
        peers.append(PeerState(
            public_key=uapi.hex_key(cur["public_key"][0]),
            preshared_key=None if psk == uapi.ZERO_KEY_HEX else uapi.hex_key(psk),
            endpoint=cur.get("endpoint", [None])[0],
            allowed_ips=tuple(cur.get("allowed_ip", [])),
            persistent_keepalive=keepalive or None,
        ))

    for line in reply.splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":
            close()
            cur = {"public_key": [value]}
        elif cur is not None:
            cur.setdefault(key, []).append(value)
        elif key == "private_key":
            private_key = uapi.hex_key(value)
        elif key == "listen_port":
            listen_port = int(value) or None
        elif key == "fwmark":
            fwmark = int(value) or None
    close()
    return TunnelState(iface, private_key, (), None, listen_port, fwmark, tuple(peers))


def read(iface: str) -> TunnelState | None:
    reply = uapi.get(iface)
    return None if reply is None else parse_config(iface, reply)


def _as_wanted(have: PeerState, want: PeerState) -> PeerState:
    """``have`` as comparable with ``want``: an endpoint the peer was not given is the one
    WireGuard learned (not ours to reset), and allowed IPs are a set."""
    endpoint = have.endpoint if want.endpoint is not None else None
    ips = want.allowed_ips if set(have.allowed_ips) == set(want.allowed_ips) \
        else have.allowed_ips
    return dataclasses.replace(have, endpoint=endpoint, allowed_ips=ips)


def config_lines(have: TunnelState, want: TunnelState) -> list[str]:
    """The UAPI lines that take the device from ``have`` to ``want``; none if it holds it.
    A port the state leaves unset is the one WireGuard chose (setting it would rebind)."""
    wanted = {p.public_key: p for p in want.peers}
    seen = tuple(_as_wanted(p, wanted[p.public_key]) if p.public_key in wanted else p
                 for p in have.peers)
    port = have.listen_port if want.listen_port is not None else None
    # Addresses and MTU are netlink's; the UAPI diff compares keys, port, mark and peers.
    return uapi.config_lines(dataclasses.replace(
        have, peers=seen, addresses=want.addresses, mtu=want.mtu, listen_port=port), want)


def _running_here(iface: str) -> bool:
    return iface in procs.wireguard_go_here() and uapi.answers(iface)


async def _start(ipr: AsyncIPRoute, iface: str, log_dir: Path) -> None:
    if shutil.which("wireguard-go") is None:
        raise NodeError("wireguard-go is not installed",
                        "apt-get install --no-install-recommends wireguard-go")
    if uapi.answers(iface):
        # The UAPI directory is global: a device of this name answers from another
        # network namespace (or a wireguard-go outside this one serves it).
        raise NodeError(f"a WireGuard device called {iface} already runs elsewhere on "
                        "this host", "give this node's tunnels other names")
    kind = await netlink.foreign_link(ipr, iface)
    if kind is not None:
        raise NodeError(f"{iface} already exists and is not a WireGuard tunnel (a {kind})",
                        "give the tunnel another name")
    await netlink.delete_link(ipr, iface)  # a TUN left by a wireguard-go that died
    with contextlib.suppress(FileNotFoundError):
        uapi.socket_path(iface).unlink()  # its socket, which answers nobody
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = log_dir / f"wireguard-go-{iface}.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # Detached (own session): it outlives this command, as a node's tunnel must.
        child = subprocess.Popen(
            ["wireguard-go", "-f", iface], stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"), "LOG_LEVEL": "error"},
            start_new_session=True)
    finally:
        os.close(fd)
    deadline = time.monotonic() + START_TIMEOUT
    while not (uapi.answers(iface) and await netlink.link_index(ipr, iface) is not None):
        if child.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            tail = log_path.read_text(errors="replace")[-400:].strip()
            raise NodeError(f"{iface}: wireguard-go did not start: {tail or 'no output'}",
                            f"see {log_path}")
        await asyncio.sleep(0.01)


async def ensure(ipr: AsyncIPRoute, want: TunnelState, log_dir: Path, *,
                 peers: bool) -> list[str]:
    """The device running and configured; ``peers`` False keeps the peers it has (a new
    device has none: nothing comes in before the rest of the role is in place)."""
    changes: list[str] = []
    if not _running_here(want.name):
        await _start(ipr, want.name, log_dir)
        changes.append(f"{want.name}: started wireguard-go")
    have = read(want.name)
    if have is None:
        raise NodeError(f"{want.name}: wireguard-go does not answer on its UAPI socket",
                        f"see {log_dir}/wireguard-go-{want.name}.log")
    target = want if peers else dataclasses.replace(want, peers=have.peers)
    lines = config_lines(have, target)
    if lines:
        reply = uapi.exchange(want.name, "set=1\n" + "\n".join(lines) + "\n\n")
        if "errno=0" not in reply:  # the reply carries an errno, never a key
            raise NodeError(f"{want.name}: wireguard-go refused its configuration "
                            f"({reply.strip()})", "see its log")
        changes.append(f"{want.name}: {'peers' if peers else 'device'} configured")
    return changes


async def remove(ipr: AsyncIPRoute, iface: str) -> list[str]:
    """Stop the device's wireguard-go (it removes its link and socket on SIGTERM)."""
    found = False
    proc = procs.wireguard_go_here().get(iface)
    if proc is not None:
        found = procs.stop(proc)
    found = await netlink.delete_link(ipr, iface) or found
    sock = uapi.socket_path(iface)
    if sock.exists() and not uapi.answers(iface):
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
    return [f"{iface}: removed"] if found else []
