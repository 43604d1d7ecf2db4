"""wg-quick parsing: real files with real keys; broken files name file and line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.errors import BraidError
from app.core.wgconf import parse_wg_quick
from tests.util import wg_keypair, wg_psk


@dataclass(frozen=True)
class Keys:
    private: str
    peer_public: str
    psk: str


@pytest.fixture(scope="module")
def keys() -> Keys:
    private, _ = wg_keypair()
    _, peer_public = wg_keypair()
    return Keys(private, peer_public, wg_psk())


def conf_text(keys: Keys, *, interface_extra: str = "", peer_extra: str = "") -> str:
    return (
        "# Hong Kong gateway, as the provider gave it\n"          # 1
        "[Interface]\n"                                             # 2
        f"PrivateKey = {keys.private}\n"                            # 3
        "Address = 10.8.0.2/32, fd00:8::2/128\n"                    # 4
        "DNS = 10.8.0.1, corp.example\n"                            # 5
        "MTU = 1380\n"                                              # 6
        "ListenPort = 51999\n"                                      # 7
        f"{interface_extra}"
        "\n"
        "[Peer]\n"
        f"PublicKey = {keys.peer_public}\n"
        f"PresharedKey = {keys.psk}\n"
        "Endpoint = hk.example.net:51820\n"
        "AllowedIPs = 0.0.0.0/0\n"
        "AllowedIPs = ::/0\n"
        "PersistentKeepalive = 25\n"
        f"{peer_extra}"
    )


def write(tmp_path: Path, text: str, name: str = "hk.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_file_round_trips(tmp_path: Path, keys: Keys) -> None:
    warnings: list[str] = []
    path = write(tmp_path, conf_text(keys, interface_extra="PostUp = iptables -A FORWARD\n"))
    gw, secrets = parse_wg_quick(path, warn=warnings.append)

    assert gw.name == "hk" and gw.interface == "br-hk"
    assert gw.addresses == ("10.8.0.2/32", "fd00:8::2/128")
    assert gw.dns == ("10.8.0.1", "corp.example")
    assert (gw.mtu, gw.listen_port, gw.cost) == (1380, 51999, 1.0)
    assert gw.peer.public_key == keys.peer_public
    assert gw.peer.endpoint == "hk.example.net:51820"
    assert gw.peer.allowed_ips == ("0.0.0.0/0", "::/0")
    assert gw.peer.persistent_keepalive == 25
    assert secrets.private_key == keys.private
    assert secrets.preshared_key == keys.psk
    assert warnings == [f"{path}:8: Braid ignores PostUp (it sets its own routing tables and "
                        f"marks, and runs no hook commands)"]
    assert keys.private not in repr(secrets) and keys.psk not in repr(secrets)


def test_wg_quick_leniencies(tmp_path: Path, keys: Keys) -> None:
    """Case-insensitive keys and sections, comments, bare addresses, keepalive off,
    no optional keys: what wg-quick itself accepts."""
    text = (
        "[interface]  # comment\n"
        f"privatekey={keys.private}\n"
        "ADDRESS = 10.8.0.2\n"
        "[PEER]\n"
        f"publickey = {keys.peer_public}   # the gateway\n"
        "endpoint = [2001:db8::1]:51820\n"
        "allowedips = 10.0.0.1/8\n"
        "PersistentKeepalive = off\n"
    )
    gw, secrets = parse_wg_quick(write(tmp_path, text, "Tokyo-1.conf"))
    assert gw.name == "tokyo-1" and gw.interface == "br-tokyo-1"
    assert gw.addresses == ("10.8.0.2/32",)
    assert gw.peer.allowed_ips == ("10.0.0.0/8",)
    assert gw.peer.endpoint == "[2001:db8::1]:51820"
    assert (gw.dns, gw.mtu, gw.listen_port, gw.peer.persistent_keepalive) == ((), None, None, None)
    assert secrets.preshared_key is None


def test_name_option_overrides_file_name(tmp_path: Path, keys: Keys) -> None:
    gw, _ = parse_wg_quick(write(tmp_path, conf_text(keys), "wg0.conf"), name="sg")
    assert (gw.name, gw.interface) == ("sg", "br-sg")


def test_unusable_file_name_asks_for_name(tmp_path: Path, keys: Keys) -> None:
    path = write(tmp_path, conf_text(keys), "my gateway.conf")
    with pytest.raises(BraidError) as err:
        parse_wg_quick(path)
    assert str(path) in err.value.what and "--name" in err.value.fix


BAD_KEY = "not-a-key!"
SHORT_KEY = "AAAA"


@pytest.mark.parametrize(
    ("edit", "line", "phrase"),
    [
        (lambda t, k: t.replace(f"PublicKey = {k.peer_public}\n", ""), 9,
         "[Peer] has no PublicKey"),
        (lambda t, k: t.replace(k.private, BAD_KEY), 3, "PrivateKey: is not base64"),
        (lambda t, k: t.replace(k.peer_public, SHORT_KEY), 10, "decodes to 3 bytes"),
        (lambda t, k: t.replace("10.8.0.2/32", "10.8.0.300/32"), 4, "'10.8.0.300/32' is not"),
        (lambda t, k: t.replace("[Peer]", "[Pier]"), 9, "unknown section [Pier]"),
        (lambda t, k: t.replace("MTU = 1380\n", f"PrivateKey = {k.private}\n"), 6,
         "PrivateKey is given twice in [Interface] (first on line 3)"),
        (lambda t, k: t + f"\n[Peer]\nPublicKey = {k.peer_public}\n", 17, "a second [Peer]"),
        (lambda t, k: t.replace("MTU", "Mtuu"), 6, "unknown key 'Mtuu' in [Interface]"),
        (lambda t, k: t.replace("hk.example.net:51820", "hk.example.net"), 12,
         "is not host:port"),
        (lambda t, k: t.replace(":51820", ":70000"), 12, "port '70000'"),
        (lambda t, k: t.replace("MTU = 1380", "MTU = big"), 6, "MTU 'big' is not a whole"),
        (lambda t, k: t.replace("MTU = 1380", "MTU = 100"), 6, "from 1280 to 9000"),
        (lambda t, k: t.replace("AllowedIPs = ::/0", "AllowedIPs = ::/0,"), 14, "empty item"),
        (lambda t, k: t.replace("DNS = 10.8.0.1", "DNS = 10.8.0.1 corp"), 5,
         "neither an IP address nor a search domain"),
        (lambda t, k: t.replace("ListenPort = 51999", "ListenPort"), 7, "is not 'Key = value'"),
        (lambda t, k: "MTU = 1\n" + t, 1, "MTU comes before any [Interface]"),
        (lambda t, k: t.replace("Endpoint = hk.example.net:51820\n", ""), 9,
         "[Peer] has no Endpoint"),
        (lambda t, k: t.replace("PersistentKeepalive = 25", "PersistentKeepalive ="), 15,
         "PersistentKeepalive has no value"),
    ],
    ids=["missing-publickey", "bad-base64", "short-key", "bad-address", "unknown-section",
         "duplicate-key", "two-peers", "unknown-key", "endpoint-no-port", "endpoint-port",
         "mtu-not-number", "mtu-range", "empty-list-item", "bad-dns", "no-equals",
         "key-before-section", "missing-endpoint", "empty-value"],
)
def test_broken_file_names_file_line_and_problem(
    tmp_path: Path, keys: Keys, edit: Callable[[str, Keys], str], line: int, phrase: str
) -> None:
    path = write(tmp_path, edit(conf_text(keys), keys))
    with pytest.raises(BraidError) as err:
        parse_wg_quick(path)
    assert f"{path}:{line}: " in err.value.what, err.value.what
    assert phrase in err.value.what, err.value.what
    assert err.value.fix
    assert keys.private not in str(err.value)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("[Interface]\nPrivateKey = x\n", "no [Peer] section"),
     ("# nothing\n", "no [Interface] section")],
)
def test_missing_sections(tmp_path: Path, text: str, phrase: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BraidError, match=r"no \[") as err:
        parse_wg_quick(path)
    assert err.value.what == f"{path}: {phrase}"


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(BraidError, match="cannot read"):
        parse_wg_quick(tmp_path / "absent.conf")
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"[Interface]\n\xff\xfe\n")
    with pytest.raises(BraidError, match=r"bin.conf:2: is not UTF-8"):
        parse_wg_quick(binary)
    huge = tmp_path / "huge.conf"
    huge.write_text("#" * 70_000)
    with pytest.raises(BraidError, match="larger than 64 KiB"):
        parse_wg_quick(huge)
