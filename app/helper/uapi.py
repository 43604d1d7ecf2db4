"""wireguard-go's UAPI: configure a device and read its counters over its socket.

Keys cross this socket in hex (the UAPI's form) and nowhere else: never argv or env.
Configuration is computed as a difference from what the device holds, so that
re-applying an unchanged tunnel sends nothing and an unchanged peer keeps its session.
"""

from __future__ import annotations

import base64
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.helper.errors import KernelError
from app.wire.state import PeerState, TunnelState

UAPI_DIR = Path("/var/run/wireguard")
ZERO_KEY_HEX = "0" * 64


def socket_path(iface: str) -> Path:
    return UAPI_DIR / f"{iface}.sock"


def key_hex(key_b64: str) -> str:
    return base64.b64decode(key_b64).hex()


def hex_key(key_hex_: str) -> str:
    return base64.b64encode(bytes.fromhex(key_hex_)).decode()


@dataclass(frozen=True)
class PeerStats:
    public_key: str  # base64
    endpoint: str | None
    last_handshake: float | None  # unix time; None before the first handshake
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class DeviceStats:
    listen_port: int | None
    fwmark: int | None
    peers: tuple[PeerStats, ...]


def exchange(iface: str, request: str, timeout: float = 5.0) -> str:
    """One UAPI request; the reply ends with an empty line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path(iface)))
        sock.sendall(request.encode())
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.decode()


def answers(iface: str) -> bool:
    try:
        return "errno=0" in exchange(iface, "get=1\n\n", timeout=1.0)
    except OSError:
        return False


def _peer_lines(peer: PeerState) -> list[str]:
    lines = [f"public_key={key_hex(peer.public_key)}"]
    psk = peer.preshared_key
    lines.append(f"preshared_key={key_hex(psk) if psk else ZERO_KEY_HEX}")
    if peer.endpoint is not None:
        lines.append(f"endpoint={peer.endpoint}")
    lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive or 0}")
    lines.append("replace_allowed_ips=true")
    lines += [f"allowed_ip={a}" for a in peer.allowed_ips]
    return lines


def config_lines(old: TunnelState | None, new: TunnelState) -> list[str]:
    """The UAPI ``set`` lines that take a device from ``old`` to ``new``; empty when
    nothing differs. ``old`` None: the device is fresh or in a state the helper does not
    know (a configuration that failed half-way, drift): everything is set and its peers
    replaced, so nothing of what it held survives unseen."""
    lines: list[str] = []
    if old is None or old.private_key != new.private_key:
        lines.append(f"private_key={key_hex(new.private_key)}")
    if (old is None and new.listen_port is not None) or (
        old is not None and old.listen_port != new.listen_port
    ):
        lines.append(f"listen_port={new.listen_port or 0}")
    if old is None or old.fwmark != new.fwmark:
        lines.append(f"fwmark={new.fwmark or 0}")
    if old is None:
        lines.append("replace_peers=true")
    before = {p.public_key: p for p in old.peers} if old is not None else {}
    after = {p.public_key: p for p in new.peers}
    for key in before.keys() - after.keys():
        lines += [f"public_key={key_hex(key)}", "remove=true"]
    for peer in new.peers:
        if before.get(peer.public_key) != peer:
            lines += _peer_lines(peer)
    return lines


def configure(iface: str, old: TunnelState | None, new: TunnelState) -> bool:
    """Bring the device to ``new``; returns whether anything was sent."""
    lines = config_lines(old, new)
    if not lines:
        return False
    try:
        reply = exchange(iface, "set=1\n" + "\n".join(lines) + "\n\n")
    except OSError as exc:
        raise KernelError(f"{iface}: cannot reach wireguard-go's UAPI socket: {exc}") from None
    if "errno=0" not in reply:
        # The reply carries only an errno, never the request (and so no key).
        raise KernelError(f"{iface}: wireguard-go refused its configuration "
                          f"({reply.strip()[:80]})")
    return True


def parse_get(reply: str) -> DeviceStats:
    listen_port: int | None = None
    fwmark: int | None = None
    peers: list[PeerStats] = []
    cur: dict[str, str] | None = None

    def close() -> None:
        if cur is None:
            return
        sec = int(cur.get("last_handshake_time_sec", "0"))
        nsec = int(cur.get("last_handshake_time_nsec", "0"))
        peers.append(
            PeerStats(
                public_key=hex_key(cur["public_key"]),
                endpoint=cur.get("endpoint"),
                last_handshake=sec + nsec / 1e9 if sec else None,
                rx_bytes=int(cur.get("rx_bytes", "0")),
                tx_bytes=int(cur.get("tx_bytes", "0")),
            )
        )

    for line in reply.splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":
            close()
            cur = {"public_key": value}
        elif cur is not None:
            cur[key] = value
        elif key == "listen_port":
            listen_port = int(value)
        elif key == "fwmark":
            fwmark = int(value)
    close()
    return DeviceStats(listen_port, fwmark, tuple(peers))


@dataclass(frozen=True)
class PeerConfig:
    public_key: str  # base64
    preshared_key_hex: str
    allowed_ips: frozenset[str]
    keepalive: int


@dataclass(frozen=True)
class DeviceConfig:
    """What a device is configured with, from ``get=1`` (the private key only as hex,
    to compare; never logged)."""

    private_key_hex: str = field(repr=False)
    listen_port: int
    fwmark: int
    peers: dict[str, PeerConfig]


def parse_config(reply: str) -> DeviceConfig:
    device: dict[str, str] = {}
    peers: dict[str, PeerConfig] = {}
    cur: dict[str, list[str]] | None = None

    def close() -> None:
        if cur is not None:
            key = hex_key(cur["public_key"][0])
            peers[key] = PeerConfig(
                key, (cur.get("preshared_key") or [ZERO_KEY_HEX])[0],
                frozenset(cur.get("allowed_ip", [])),
                int((cur.get("persistent_keepalive_interval") or ["0"])[0]))

    for line in reply.splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":
            close()
            cur = {"public_key": [value]}
        elif cur is not None:
            cur.setdefault(key, []).append(value)
        else:
            device[key] = value
    close()
    return DeviceConfig(device.get("private_key", ""), int(device.get("listen_port", "0")),
                        int(device.get("fwmark", "0")), peers)


def get(iface: str) -> str | None:
    """The device's ``get=1`` reply (None: it does not answer). It holds the private key
    (in hex): parse it, never log it."""
    try:
        reply = exchange(iface, "get=1\n\n", timeout=2.0)
    except OSError:
        return None
    return reply if "errno=0" in reply else None


def config(iface: str) -> DeviceConfig | None:
    reply = get(iface)
    return parse_config(reply) if reply is not None else None


def drift(want: TunnelState, have: DeviceConfig) -> list[str]:
    """How ``have`` differs from ``want``, in words that never hold a key. Endpoints
    are not compared: WireGuard moves them itself when a peer roams."""
    out: list[str] = []
    if have.private_key_hex != key_hex(want.private_key):
        out.append("private key")
    if want.listen_port is not None and have.listen_port != want.listen_port:
        out.append("listen port")
    if have.fwmark != (want.fwmark or 0):
        out.append("fwmark")
    peers = {p.public_key: p for p in want.peers}
    if set(peers) != set(have.peers):
        out.append("peers")
        return out
    for key, peer in peers.items():
        got = have.peers[key]
        psk = key_hex(peer.preshared_key) if peer.preshared_key else ZERO_KEY_HEX
        if (got.preshared_key_hex != psk or got.allowed_ips != frozenset(peer.allowed_ips)
                or got.keepalive != (peer.persistent_keepalive or 0)):
            out.append("peer settings")
    return out


def stats(iface: str) -> DeviceStats | None:
    reply = get(iface)
    # get=1 also returns private_key=...; parse_get drops it, and it is never logged.
    return parse_get(reply) if reply is not None else None


def handshake_age(peer: PeerStats, now: float | None = None) -> float | None:
    if peer.last_handshake is None:
        return None
    return max(0.0, (now if now is not None else time.time()) - peer.last_handshake)
