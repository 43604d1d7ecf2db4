"""wg-quick parsing: real files with real keys; broken files name file and line."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("file_name", "name"),
    [("se-got-wg-001.conf", "se-got-wg001"), ("wg-JP-FREE-12.conf", "wg-jp-free12"),
     ("JP-FREE#12.conf", "jp-free-12"), ("my gateway.conf", "my-gateway")],
)
def test_providers_file_names_give_gateway_names(tmp_path: Path, keys: Keys, file_name: str,
                                                 name: str) -> None:
    gw, _ = parse_wg_quick(write(tmp_path, conf_text(keys), file_name))
    assert (gw.name, gw.interface, gw.source) == (name, f"br-{name}", file_name)


def test_a_bad_name_given_says_so(tmp_path: Path, keys: Keys) -> None:
    path = write(tmp_path, conf_text(keys))
    assert parse_wg_quick(path, name="abcdefghijkl")[0].name == "abcdefghijkl"  # 12: fits
    for bad in ("abcdefghijklm", "Hk", "1hk", ""):
        with pytest.raises(BraidError) as err:
            parse_wg_quick(path, name=bad)
        assert f"--name for {path}: " in err.value.what and "is not a gateway name" in \
            err.value.what


BAD_KEY = "not-a-key!"
SHORT_KEY = "AAAA"


@pytest.mark.parametrize(
    ("edit", "line", "phrase"),
    [
        (lambda t, k: t.replace(f"PublicKey = {k.peer_public}\n", ""), 9,
         "[Peer] has no PublicKey; add a line like PublicKey = <44 characters"),
        (lambda t, k: t.replace(k.private, BAD_KEY), 3, "PrivateKey: is not base64"),
        (lambda t, k: t.replace(k.peer_public, SHORT_KEY), 10, "decodes to 3 bytes"),
        (lambda t, k: t.replace("10.8.0.2/32", "10.8.0.300/32"), 4,
         "'10.8.0.300/32' is not an IP address with an optional /prefix; write it like "
         "Address = 10.8.0.2/32"),
        (lambda t, k: t.replace("[Peer]", "[Pier]"), 9, "unknown section [Pier]"),
        (lambda t, k: t.replace("[Peer]", "[Peer"), 9, "a section header ends with ']'"),
        (lambda t, k: t.replace("MTU = 1380\n", f"PrivateKey = {k.private}\n"), 6,
         "PrivateKey is given twice in [Interface] (first on line 3); keep one"),
        (lambda t, k: t + f"\n[Peer]\nPublicKey = {k.peer_public}\n", 17, "a second [Peer]"),
        (lambda t, k: t.replace("ListenPort", "[Interface]\nListenPort"), 7,
         "a second [Interface]"),
        (lambda t, k: t.replace("MTU", "Mtuu"), 6, "unknown key 'Mtuu' in [Interface]; known "
                                                   "keys: PrivateKey, Address"),
        (lambda t, k: t.replace("MTU", "M T U"), 6, "unknown key 'M T U' in [Interface]; "
                                                    "write it as MTU"),
        (lambda t, k: t.replace("Endpoint =", "MTU = 1380\nEndpoint ="), 12,
         "MTU belongs in [Interface], not in [Peer]; move it there"),
        (lambda t, k: t.replace("hk.example.net:51820", "hk.example.net"), 12,
         "is not host:port; write it like Endpoint = vpn.example.com:51820"),
        (lambda t, k: t.replace(":51820", ":70000"), 12, "port '70000'"),
        (lambda t, k: t.replace("MTU = 1380", "MTU = big"), 6,
         "MTU: 'big' is not a whole number; write it like MTU = 1420, or remove the line"),
        (lambda t, k: t.replace("MTU = 1380", "MTU = ²"), 6, "'²' is not a whole number"),
        (lambda t, k: t.replace("MTU = 1380", "MTU = 100"), 6, "100 is out of range 1280..9000"),
        (lambda t, k: t.replace("AllowedIPs = ::/0", "AllowedIPs = ::/0,"), 14,
         "AllowedIPs has an empty item"),
        (lambda t, k: t.replace("DNS = 10.8.0.1", "DNS = 10.8.0.1 corp"), 5,
         "neither an IP address nor a search domain"),
        (lambda t, k: t.replace("ListenPort = 51999", "ListenPort"), 7,
         "ListenPort has no '='; write it like ListenPort = 51820"),
        (lambda t, k: t.replace("ListenPort = 51999", "ListenPort: 51999"), 7,
         "ListenPort is followed by ':'; write it with '=': ListenPort = 51820"),
        (lambda t, k: t.replace("ListenPort = 51999", "just words"), 7,
         "this line is neither a [Section] header nor 'Key = value'"),
        (lambda t, k: "MTU = 1\n" + t, 1, "MTU comes before any section; put [Interface]"),
        (lambda t, k: t.replace("Endpoint = hk.example.net:51820\n", ""), 9,
         "[Peer] has no Endpoint"),
        (lambda t, k: t.replace("PersistentKeepalive = 25", "PersistentKeepalive ="), 15,
         "PersistentKeepalive has no value; write it like PersistentKeepalive = 25, or remove"),
        (lambda t, k: t.replace("10.8.0.2/32, fd00:8::2/128", "fd00:8::2/128"), 4,
         "fd00:8::2/128 has no IPv4 address; Braid needs one per gateway (its probes are "
         "ICMPv4): add the IPv4 address your provider gave this tunnel, e.g. Address = "
         "10.8.0.2/32, fd00:8::2/128"),
        (lambda t, k: t.replace("10.8.0.2/32, fd00:8::2/128", "10.8.0.2/32, 10.8.0.2/24"), 4,
         "Address: 10.8.0.2 is given twice"),
        (lambda t, k: t.replace("10.8.0.2/32", "127.0.0.2/32"), 4,
         "'127.0.0.2/32' cannot be a tunnel's address"),
        (lambda t, k: t.replace("10.8.0.2/32", "169.254.0.2/16"), 4, "cannot be a tunnel's"),
        (lambda t, k: t.replace("10.8.0.2/32", "224.0.0.9/32"), 4, "cannot be a tunnel's"),
        (lambda t, k: t.replace("10.8.0.2/32", "0.0.0.0/0"), 4, "cannot be a tunnel's"),
        (lambda t, k: t.replace("MTU = 1380", "Jc = 4\nJmin = 40"), 6,
         "Jc: AmneziaWG obfuscation is not supported by Braid (it needs amneziawg-go); use a "
         "plain WireGuard file from your provider"),
        (lambda t, k: t.replace("MTU = 1380", "H4 = 1234567"), 6, "H4: AmneziaWG obfuscation"),
    ],
    ids=["missing-publickey", "bad-base64", "short-key", "bad-address", "unknown-section",
         "unclosed-section", "duplicate-key", "two-peers", "two-interfaces", "unknown-key",
         "misspelt-key", "key-in-wrong-section", "endpoint-no-port", "endpoint-port",
         "mtu-not-number", "mtu-superscript", "mtu-range", "empty-list-item", "bad-dns",
         "no-equals", "colon", "not-a-setting", "key-before-section", "missing-endpoint",
         "empty-value", "ipv6-only", "address-twice", "loopback-address",
         "link-local-address", "multicast-address", "unspecified-address", "amneziawg",
         "amneziawg-h4"],
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
    assert err.value.what.startswith(f"{path}: {phrase}; ")


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(BraidError, match="cannot read"):
        parse_wg_quick(tmp_path / "absent.conf")
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"[Interface]\n\xff\xfe\n")
    with pytest.raises(BraidError, match=r"bin.conf:2: is not UTF-8"):
        parse_wg_quick(binary)


def test_size_limit_edges(tmp_path: Path, keys: Keys) -> None:
    text = conf_text(keys)
    exact = write(tmp_path, text + "#" * (64 * 1024 - len(text) - 1) + "\n", "exact.conf")
    assert exact.stat().st_size == 64 * 1024
    assert parse_wg_quick(exact)[0].name == "exact"
    over = write(tmp_path, text + "#" * (64 * 1024 - len(text)) + "\n", "over.conf")
    with pytest.raises(BraidError, match=r"over\.conf: is larger than 64 KiB"):
        parse_wg_quick(over)


# ---- encodings: what Windows tools save ------------------------------------------------

@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")],
    ids=["utf-8-bom", "utf-16-le", "utf-16-be"],
)
def test_byte_order_marks_are_read(tmp_path: Path, keys: Keys, encoding: str,
                                   bom: bytes) -> None:
    """Notepad's "UTF-8 with BOM" and "Unicode" (UTF-16), with Windows line ends."""
    text = conf_text(keys).replace("\n", "\r\n").replace("Hong Kong", "Hongkong (香港)")
    path = tmp_path / "hk.conf"
    path.write_bytes(bom + text.encode(encoding))
    gw, secrets = parse_wg_quick(path)
    assert gw.name == "hk" and secrets.private_key == keys.private
    assert gw.peer.persistent_keepalive == 25


def test_other_encodings_say_line_and_what_to_do(tmp_path: Path, keys: Keys) -> None:
    # Latin-1 (Windows-1252) in a comment on line 5: the byte is never shown.
    text = conf_text(keys).replace("DNS = 10.8.0.1, corp.example", "DNS = 10.8.0.1 # Zürich")
    path = tmp_path / "hk.conf"
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(BraidError) as err:
        parse_wg_quick(path)
    assert err.value.what == f"{path}:5: is not UTF-8 text (column 19 cannot be read)"
    assert "save the file as UTF-8" in err.value.fix
    # UTF-16 without a byte-order mark: NUL bytes everywhere.
    path.write_bytes(conf_text(keys).encode("utf-16-le"))
    with pytest.raises(BraidError) as err:
        parse_wg_quick(path)
    assert err.value.what.startswith(f"{path}:1: has a NUL character")
    assert "save the file as UTF-8" in err.value.fix
    # A UTF-16 file cut in the middle of a character.
    path.write_bytes(b"\xff\xfe" + "[Interface]\nPrivateKey = x".encode("utf-16-le") + b"\x00\xd8")
    with pytest.raises(BraidError, match=r"hk.conf:2: is not UTF-16 text \(column 15"):
        parse_wg_quick(path)


# ---- every range, both edges -----------------------------------------------------------

def _set(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("MTU = 1380", "MTU = 1279", "out of range 1280..9000"),
        ("MTU = 1380", "MTU = 1280", ("mtu", 1280)),
        ("MTU = 1380", "MTU = 9000", ("mtu", 9000)),
        ("MTU = 1380", "MTU = 9001", "out of range 1280..9000"),
        ("ListenPort = 51999", "ListenPort = 0", ("listen_port", None)),  # wg picks one
        ("ListenPort = 51999", "ListenPort = 1", ("listen_port", 1)),
        ("ListenPort = 51999", "ListenPort = 65535", ("listen_port", 65535)),
        ("ListenPort = 51999", "ListenPort = 65536", "out of range 1..65535"),
        ("PersistentKeepalive = 25", "PersistentKeepalive = 0", ("keepalive", None)),  # off
        ("PersistentKeepalive = 25", "PersistentKeepalive = 1", ("keepalive", 1)),
        ("PersistentKeepalive = 25", "PersistentKeepalive = 65535", ("keepalive", 65535)),
        ("PersistentKeepalive = 25", "PersistentKeepalive = 65536", "out of range 1..65535"),
        (":51820", ":0", "port '0' is not a number from 1 to 65535"),
        (":51820", ":1", ("endpoint", "hk.example.net:1")),
        (":51820", ":65535", ("endpoint", "hk.example.net:65535")),
        (":51820", ":65536", "port '65536' is not a number from 1 to 65535"),
        ("10.8.0.2/32,", "10.8.0.2/33,", "is not an IP address with an optional /prefix"),
        ("10.8.0.2/32,", "10.8.0.2/0,", ("addresses", ("10.8.0.2/0", "fd00:8::2/128"))),
        ("fd00:8::2/128", "fd00:8::2/129", "is not an IP address with an optional /prefix"),
        ("AllowedIPs = 0.0.0.0/0", "AllowedIPs = 10.1.2.3/32", ("allowed_ips",
                                                                ("10.1.2.3/32", "::/0"))),
        ("AllowedIPs = 0.0.0.0/0", "AllowedIPs = 10.1.2.3/33", "is not an IP network"),
        ("AllowedIPs = ::/0", "AllowedIPs = ::/129", "is not an IP network"),
    ],
)
def test_each_range_at_both_edges(tmp_path: Path, keys: Keys, old: str, new: str,
                                  expect: str | tuple[str, object]) -> None:
    text = _set(conf_text(keys), old, new)
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if new in row)
    path = write(tmp_path, text)
    if isinstance(expect, str):
        with pytest.raises(BraidError) as err:
            parse_wg_quick(path)
        assert err.value.what.startswith(f"{path}:{line}: "), err.value.what
        assert expect in err.value.what and "write it like" in err.value.what, err.value.what
        return
    gw, _ = parse_wg_quick(path)
    got = {"mtu": gw.mtu, "listen_port": gw.listen_port, "endpoint": gw.peer.endpoint,
           "keepalive": gw.peer.persistent_keepalive, "addresses": gw.addresses,
           "allowed_ips": gw.peer.allowed_ips}
    assert got[expect[0]] == expect[1]


def test_list_lengths_at_both_edges(tmp_path: Path, keys: Keys) -> None:
    """At most 16 addresses and 256 networks: what the helper takes (app/wire/state.py)."""
    def addresses(n: int) -> str:
        return ", ".join(f"10.8.{i}.2/32" for i in range(n))

    def networks(n: int) -> str:
        return ", ".join(f"10.{i}.0.0/16" for i in range(n))

    base = conf_text(keys)
    ok = _set(_set(base, "10.8.0.2/32, fd00:8::2/128", addresses(16)),
              "AllowedIPs = 0.0.0.0/0\n", f"AllowedIPs = {networks(255)}\n")
    gw, _ = parse_wg_quick(write(tmp_path, ok))
    assert (len(gw.addresses), len(gw.peer.allowed_ips)) == (16, 256)
    with pytest.raises(BraidError, match=r"hk.conf:4: Address: 17 addresses; a tunnel has at "
                                         r"most 16"):
        parse_wg_quick(write(tmp_path, _set(base, "10.8.0.2/32, fd00:8::2/128",
                                            addresses(17))))
    with pytest.raises(BraidError, match=r"hk.conf:13: AllowedIPs: 257 networks; a peer has "
                                         r"at most 256"):
        parse_wg_quick(write(tmp_path, _set(base, "AllowedIPs = 0.0.0.0/0\n",
                                            f"AllowedIPs = {networks(256)}\n")))


def test_an_address_with_its_subnet_is_kept_as_written(tmp_path: Path, keys: Keys) -> None:
    """wg-easy, PiVPN and setup scripts write the tunnel's subnet; the engine's plan makes
    it the host address and a route (docs/profiles.md)."""
    text = _set(conf_text(keys), "10.8.0.2/32, fd00:8::2/128", "10.7.0.5/24, fd42::5/64")
    gw, _ = parse_wg_quick(write(tmp_path, text))
    assert gw.addresses == ("10.7.0.5/24", "fd42::5/64")


# ---- no key in any message ---------------------------------------------------------------

def key_material(text: str, *secrets: str) -> list[str]:
    """Pieces of ``secrets`` (10 characters or more) or key-like runs found in ``text``."""
    found = re.findall(r"[A-Za-z0-9+/]{43,}", text)  # a key's 44 characters, '=' aside
    for secret in secrets:
        found += [secret[i:i + 10] for i in range(len(secret) - 9) if secret[i:i + 10] in text]
    return found


def broken_files(keys: Keys) -> dict[str, str]:
    """Files broken around a real private and preshared key, each a way people get it
    wrong (or a way a value could land in a message)."""
    k, p = keys.private, keys.psk
    good = conf_text(keys)
    line = f"PrivateKey = {k}"
    peer = f"PresharedKey = {p}"
    cases = {  # the PrivateKey line broken
        "colon": line.replace(" =", ":"),
        "colon-no-space": line.replace(" = ", ":"),
        "space": line.replace(" = ", " "),
        "double-equals": line.replace("=", "==", 1),
        "key-and-junk": f"{line} junk",
        "key-alone": k,
        "key-as-section": f"[{k}]",
        "key-in-open-section": f"[Interface {k}",
        "reversed": f"{k} = PrivateKey",
        "misspelt": line.replace("PrivateKey", "PrivatKey"),
        "spaced-name": line.replace("PrivateKey", "Private Key"),
        "short-key": line[:-2],
        "amneziawg-with-key": f"Jc = {k}",
        "fullwidth-equals": line.replace("=", "\uff1d", 1),
    }
    files = {name: _set(good, line, bad) for name, bad in cases.items()}
    fields = {  # the key pasted into (or next to) another field's value
        "address": "Address = 10.8.0.2/32, fd00:8::2/128",
        "dns": "DNS = 10.8.0.1, corp.example",
        "mtu": "MTU = 1380",
        "listenport": "ListenPort = 51999",
        "endpoint": "Endpoint = hk.example.net:51820",
        "allowedips": "AllowedIPs = 0.0.0.0/0",
        "keepalive": "PersistentKeepalive = 25",
        "publickey": f"PublicKey = {keys.peer_public}",
    }
    for name, setting in fields.items():
        key_name = setting.split(" =")[0]
        for secret_name, secret in (("key", k), ("psk", p)):
            files[f"{secret_name}-in-{name}"] = _set(good, setting, f"{key_name} = {secret}")
            files[f"{secret_name}-after-{name}"] = _set(good, setting, f"{setting}{secret}")
            files[f"{secret_name}-host-{name}"] = _set(good, setting, f"{key_name} = {secret}:1")
            split = f"{secret[:22]} {secret[22:]}"  # a stray space: two halves
            files[f"{secret_name}-split-{name}"] = _set(good, setting, f"{key_name} = {split}")
    files["given-twice"] = _set(good, "MTU = 1380", line)
    files["before-section"] = f"{line.replace(' = ', ': ')}\n{good}"
    files["key-in-peer"] = _set(good, "Endpoint = ", f"{line}\nEndpoint = ")
    peer_cases = {
        "psk-colon": peer.replace(" =", ":"),
        "psk-twice": f"{peer}, {p}",
        "psk-unknown-key": peer.replace("PresharedKey", "PSK"),
        "psk-misspelt": peer.replace("PresharedKey", "PreSharedKee"),
        "psk-alone": p,
    }
    files |= {name: _set(good, peer, bad) for name, bad in peer_cases.items()}
    files["hook-with-key"] = _set(good, "ListenPort",
                                  f"PostUp = wg set %i private-key <(echo {k})\nListenPort")
    files["not-utf8-key-line"] = _set(good, line, f"{line} \udcff")
    return files


def test_no_key_in_any_error_or_warning(tmp_path: Path, keys: Keys) -> None:
    files = broken_files(keys)
    assert len(files) > 60
    for name, text in files.items():
        path = tmp_path / f"{name}.conf"
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        warnings: list[str] = []
        try:
            parse_wg_quick(path, warn=warnings.append)
            message = ""
            # A key where the server's public key goes is a valid key: it imports.
            assert name in ("hook-with-key", "key-in-publickey", "psk-in-publickey"), name
        except BraidError as exc:
            message = str(exc)
            assert message.startswith(f"{path}:"), message
        for text_out in (message, *warnings):
            assert not key_material(text_out, keys.private, keys.psk), (name, text_out)
    # The colon: said what it is, without the key.
    path = write(tmp_path, broken_files(keys)["colon"], "colon.conf")
    with pytest.raises(BraidError) as err:
        parse_wg_quick(path)
    assert err.value.what == (f"{path}:3: PrivateKey is followed by ':'; write it with '=': "
                              f"PrivateKey = <44 characters ending in '='>")
