"""What the helper sends to wireguard-go and nft, computed from a state (no kernel)."""

from __future__ import annotations

import base64
import dataclasses

from app.helper import nft, uapi
from app.wire.state import MarkClass, Marking, PeerState, TunnelState

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(1, 33))).decode()
K3 = base64.b64encode(bytes(range(2, 34))).decode()

PEER = PeerState(K2, None, "198.18.0.1:51000", ("0.0.0.0/0",), 25)
TUNNEL = TunnelState("br-x", K1, ("198.19.0.2/32",), 1380, None, 0x0F000000, (PEER,))


def test_fresh_device_gets_everything_in_hex() -> None:
    lines = uapi.config_lines(None, TUNNEL)
    assert lines[0] == f"private_key={bytes(range(32)).hex()}"
    assert "fwmark=251658240" in lines
    assert not any(line.startswith("listen_port") for line in lines)  # random port
    assert f"public_key={bytes(range(1, 33)).hex()}" in lines
    assert "endpoint=198.18.0.1:51000" in lines
    assert "persistent_keepalive_interval=25" in lines
    assert lines[-2:] == ["replace_allowed_ips=true", "allowed_ip=0.0.0.0/0"]
    assert K1 not in "\n".join(lines)  # hex only, as the UAPI wants


def test_unchanged_tunnel_sends_nothing() -> None:
    assert uapi.config_lines(TUNNEL, TUNNEL) == []


def test_changes_touch_only_what_changed() -> None:
    other = PeerState(K3, K1, None, ("10.0.0.0/8",), None)
    new = dataclasses.replace(TUNNEL, listen_port=51820, peers=(other,))
    lines = uapi.config_lines(TUNNEL, new)
    assert "listen_port=51820" in lines
    assert not any(line.startswith("private_key") for line in lines)
    assert lines[lines.index(f"public_key={bytes(range(1, 33)).hex()}") + 1] == "remove=true"
    assert f"preshared_key={bytes(range(32)).hex()}" in lines


def test_get_reply_is_parsed_without_keeping_the_private_key() -> None:
    reply = (
        f"private_key={'ab' * 32}\nlisten_port=40000\nfwmark=251658240\n"
        f"public_key={bytes(range(1, 33)).hex()}\nendpoint=198.18.0.1:51000\n"
        "last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=500000000\n"
        "rx_bytes=92\ntx_bytes=180\npersistent_keepalive_interval=25\nerrno=0\n\n"
    )
    stats = uapi.parse_get(reply)
    assert stats.listen_port == 40000 and stats.fwmark == 0x0F000000
    (peer,) = stats.peers
    assert peer.public_key == K2 and peer.last_handshake == 1700000000.5
    assert (peer.rx_bytes, peer.tx_bytes) == (92, 180)
    assert "ab" * 32 not in repr(stats)


def test_nft_ruleset_from_marking() -> None:
    marking = Marking(0x0F000000, (MarkClass("default", 0x02000000),), True, ())
    text = nft.render(marking)
    assert text.startswith("table inet braid {")
    assert "type route hook output priority mangle" in text
    assert "meta mark & 0x0f000000 == 0x0f000000 return" in text
    assert "meta mark set 0x02000000 ct mark set ct mark & 0xf0ffffff | 0x02000000" in text
    # No tunnels, nothing to masquerade; with tunnels, exactly theirs (br-* is also
    # Docker's bridges).
    assert "masquerade" not in text and "br-*" not in text
    named = nft.render(marking, ["br-b", "br-a"])
    assert 'oifname { "br-a", "br-b" } masquerade' in named and "br-*" not in named
    assert "masquerade" not in nft.render(dataclasses.replace(marking, masquerade=False),
                                          ["br-a"])
    # Nothing connects in through a tunnel: a flow's first packet from one is dropped.
    assert 'iifname { "br-a", "br-b" } ct state new drop' in named
    assert "chain input" not in text
