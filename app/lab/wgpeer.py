"""Configure the lab's own wireguard-go devices (gateways, baseline) over their UAPI.

The socket protocol itself is the helper's (app.helper.uapi); what is the lab's is the
peer set: keys never touch argv, only that socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.errors import BraidError
from app.helper.uapi import UAPI_DIR, exchange, key_hex
from app.helper.uapi import answers as uapi_answers
from app.helper.uapi import socket_path as uapi_path

__all__ = ["UAPI_DIR", "UapiPeer", "configure", "uapi_answers", "uapi_path"]


@dataclass(frozen=True)
class UapiPeer:
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None
    persistent_keepalive: int | None = None


def configure(iface: str, private_key: str, listen_port: int | None,
              peers: list[UapiPeer]) -> None:
    lines = ["set=1", f"private_key={key_hex(private_key)}"]
    if listen_port is not None:
        lines.append(f"listen_port={listen_port}")
    lines.append("replace_peers=true")
    for peer in peers:
        lines.append(f"public_key={key_hex(peer.public_key)}")
        if peer.endpoint:
            lines.append(f"endpoint={peer.endpoint}")
        if peer.persistent_keepalive:
            lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        lines.append("replace_allowed_ips=true")
        lines += [f"allowed_ip={a}" for a in peer.allowed_ips]
    reply = exchange(iface, "\n".join(lines) + "\n\n")
    if "errno=0" not in reply:
        log = Path("/run/braid/lab")
        raise BraidError(f"wireguard-go {iface} refused its configuration: {reply.strip()}",
                         f"see the lab's logs under {log}/<lab>/log/")
