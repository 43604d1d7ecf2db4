"""Configure a wireguard-go device over its UAPI socket (keys never touch argv)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.errors import BraidError
from app.lab.keys import to_hex
from app.lab.unixsock import ask

UAPI_DIR = Path("/var/run/wireguard")


@dataclass(frozen=True)
class UapiPeer:
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None
    persistent_keepalive: int | None = None


def uapi_path(iface: str) -> Path:
    return UAPI_DIR / f"{iface}.sock"


def _exchange(iface: str, request: str, timeout: float = 5.0) -> str:
    return ask(uapi_path(iface), request.encode(), b"\n\n", timeout).decode()


def uapi_answers(iface: str) -> bool:
    try:
        return "errno=0" in _exchange(iface, "get=1\n\n", timeout=1.0)
    except OSError:
        return False


def configure(iface: str, private_key: str, listen_port: int | None,
              peers: list[UapiPeer]) -> None:
    lines = ["set=1", f"private_key={to_hex(private_key)}"]
    if listen_port is not None:
        lines.append(f"listen_port={listen_port}")
    lines.append("replace_peers=true")
    for peer in peers:
        lines.append(f"public_key={to_hex(peer.public_key)}")
        if peer.endpoint:
            lines.append(f"endpoint={peer.endpoint}")
        if peer.persistent_keepalive:
            lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        lines.append("replace_allowed_ips=true")
        lines += [f"allowed_ip={a}" for a in peer.allowed_ips]
    reply = _exchange(iface, "\n".join(lines) + "\n\n")
    if "errno=0" not in reply:
        raise BraidError(f"wireguard-go {iface} refused its configuration: {reply.strip()}",
                         "see the lab's log directory")


def stats(iface: str) -> dict[str, dict[str, int]]:
    """Per peer (hex public key): last_handshake_time_sec, rx_bytes, tx_bytes."""
    out: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in _exchange(iface, "get=1\n\n").splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":
            current = out.setdefault(value, {})
        elif current is not None and key in ("last_handshake_time_sec", "rx_bytes", "tx_bytes"):
            current[key] = int(value)
    return out
