"""Reading wg-quick .conf files: one file, one gateway (one [Peer]).

Follows wg-quick's own reading: `#` starts a comment, keys and section names are
case-insensitive, Address / DNS / AllowedIPs take comma-separated lists and may repeat.
Everything else is strict: an unknown section or key, a repeated single-valued key, a
second [Peer], a bad key or address is an error naming the file, the line and what is
wrong. wg-quick's own settings that make no sense under Braid (Table, FwMark, the
Pre/Post Up/Down hooks, SaveConfig) are accepted with a warning that Braid ignores them:
Braid sets routing tables and marks itself and never runs hook commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import BraidError
from app.core.profiles.model import Gateway, GatewaySecrets, Peer
from app.core.profiles.rules import (
    check_addresses,
    check_dns,
    check_endpoint,
    check_gateway_name,
    check_int,
    check_interface_address,
    check_key,
    check_network,
)
from app.wire.fields import KEEPALIVE_MAX, MTU_MAX, MTU_MIN

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024
_FIX = "fix the file (it is a wg-quick .conf: see `man wg-quick`) and import it again"

# Lower-case key -> its canonical spelling, per section.
_INTERFACE_KEYS = {k.lower(): k for k in ("PrivateKey", "Address", "DNS", "MTU", "ListenPort")}
_PEER_KEYS = {k.lower(): k for k in (
    "PublicKey", "PresharedKey", "Endpoint", "AllowedIPs", "PersistentKeepalive")}
_IGNORED_KEYS = {k.lower(): k for k in (
    "Table", "FwMark", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig")}
_LIST_KEYS = {"address", "dns", "allowedips"}
_SECTIONS = {"interface": "Interface", "peer": "Peer"}


@dataclass
class _Section:
    name: str  # "Interface" | "Peer"
    line: int
    values: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # key -> (line, item)
    lines: dict[str, int] = field(default_factory=dict)  # lower key -> first line


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, line: int | None, message: str) -> BraidError:
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return BraidError(f"{where}: {message}", _FIX)

    def read_text(self) -> str:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise BraidError(f"cannot read {self.path}: {exc.strerror or exc}",
                             "check the file name and that you may read it") from None
        if len(data) > MAX_BYTES:
            raise self.error(None, f"is larger than {MAX_BYTES // 1024} KiB; "
                                   f"it is not a wg-quick .conf")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise self.error(line, "is not UTF-8 text") from None

    def sections(self, text: str, warn: Callable[[str], None]) -> list[_Section]:
        sections: list[_Section] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise self.error(number, f"{line!r} is not a [Section] header")
                title = line[1:-1].strip().lower()
                if title not in _SECTIONS:
                    raise self.error(number, f"unknown section [{line[1:-1].strip()}]; "
                                             f"a wg-quick file has [Interface] and [Peer]")
                sections.append(_Section(_SECTIONS[title], number))
                continue
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise self.error(number, f"{line!r} is not 'Key = value'")
            if not sections:
                raise self.error(number, f"{key} comes before any [Interface] or [Peer]")
            self._add(sections[-1], number, key, value, warn)
        return sections

    def _add(self, section: _Section, number: int, key: str, value: str,
             warn: Callable[[str], None]) -> None:
        low = key.lower()
        if section.name == "Interface" and low in _IGNORED_KEYS:
            warn(f"{self.path}:{number}: Braid ignores {_IGNORED_KEYS[low]} (it sets its own "
                 f"routing tables and marks, and runs no hook commands)")
            return
        known = _INTERFACE_KEYS if section.name == "Interface" else _PEER_KEYS
        if low not in known:
            raise self.error(number, f"unknown key {key!r} in [{section.name}]; "
                                     f"known keys: {', '.join(known.values())}")
        if not value:
            raise self.error(number, f"{known[low]} has no value")
        if low in section.values and low not in _LIST_KEYS:
            raise self.error(number, f"{known[low]} is given twice in [{section.name}] "
                                     f"(first on line {section.lines[low]})")
        items = [v.strip() for v in value.split(",")] if low in _LIST_KEYS else [value]
        if "" in items:
            raise self.error(number, f"{known[low]} has an empty item in {value!r}")
        section.values.setdefault(low, []).extend((number, item) for item in items)
        section.lines.setdefault(low, number)


class _Fields:
    """Checked values of one section; errors name the line of the offending key."""

    def __init__(self, reader: _Reader, section: _Section) -> None:
        self.reader = reader
        self.section = section

    def all(self, key: str, check: Callable[[str], str]) -> list[str]:
        out = []
        for line, item in self.section.values.get(key, []):
            try:
                out.append(check(item))
            except ValueError as exc:
                name = (_INTERFACE_KEYS | _PEER_KEYS)[key]
                raise self.reader.error(line, f"{name}: {exc}") from None
        return out

    def required(self, key: str, check: Callable[[str], str]) -> list[str]:
        if key not in self.section.values:
            name = (_INTERFACE_KEYS | _PEER_KEYS)[key]
            raise self.reader.error(self.section.line, f"[{self.section.name}] has no {name}")
        return self.all(key, check)

    def optional(self, key: str, check: Callable[[str], str]) -> str | None:
        values = self.all(key, check)
        return values[0] if values else None

    def number(self, key: str, low: int, high: int, *, off: bool = False) -> int | None:
        """A whole number; with ``off``, "off" and 0 mean none (as for keepalive)."""
        raw = self.optional(key, str)
        if raw is None or (off and raw.lower() in ("off", "0")):
            return None
        name = (_INTERFACE_KEYS | _PEER_KEYS)[key]
        try:
            return check_int(int(raw) if raw.isdigit() else -1, low, high)
        except ValueError:
            raise self.reader.error(self.section.lines[key],
                                    f"{name} {raw!r} is not a whole number from {low} "
                                    f"to {high}") from None


def gateway_name_for(path: Path) -> str:
    """The gateway name a file gives by default: its name without .conf, lower-cased."""
    return path.name.removesuffix(".conf").lower()


def parse_wg_quick(path: Path, *, name: str | None = None,
                   warn: Callable[[str], None] | None = None
                   ) -> tuple[Gateway, GatewaySecrets]:
    """Read one wg-quick file as a gateway named ``name`` (default: from the file name).

    Raises BraidError naming the file, the line and what is wrong. ``warn`` receives
    notes about settings Braid ignores (default: the log).
    """
    warn = warn or log.warning
    reader = _Reader(path)
    gw_name = name if name is not None else gateway_name_for(path)
    try:
        check_gateway_name(gw_name)
    except ValueError as exc:
        how = "" if name is not None else " (taken from the file name)"
        raise BraidError(f"{path}: gateway name{how}: {exc}",
                         "choose a name with --name, for example --name hk") from None

    sections = reader.sections(reader.read_text(), warn)
    interfaces = [s for s in sections if s.name == "Interface"]
    peers = [s for s in sections if s.name == "Peer"]
    if len(interfaces) > 1:
        raise reader.error(interfaces[1].line, "a second [Interface] section")
    if len(peers) > 1:
        raise reader.error(peers[1].line,
                           "a second [Peer]: Braid takes one gateway (one peer) per file; "
                           "split it into one file per peer")
    if not interfaces:
        raise reader.error(None, "no [Interface] section")
    if not peers:
        raise reader.error(None, "no [Peer] section")

    iface = _Fields(reader, interfaces[0])
    private_key = iface.required("privatekey", check_key)[0]
    addresses = tuple(iface.required("address", check_interface_address))
    try:
        check_addresses(addresses)
    except ValueError as exc:
        raise reader.error(interfaces[0].lines["address"], f"Address: {exc}") from None
    dns = tuple(iface.all("dns", check_dns))
    mtu = iface.number("mtu", MTU_MIN, MTU_MAX)
    listen_port = iface.number("listenport", 1, 65535)

    peer = _Fields(reader, peers[0])
    public_key = peer.required("publickey", check_key)[0]
    preshared_key = peer.optional("presharedkey", check_key)
    endpoint = peer.required("endpoint", check_endpoint)[0]
    allowed_ips = tuple(peer.required("allowedips", check_network))
    keepalive = peer.number("persistentkeepalive", 1, KEEPALIVE_MAX, off=True)

    gateway = Gateway(
        name=gw_name, interface=f"br-{gw_name}", addresses=addresses, dns=dns, mtu=mtu,
        listen_port=listen_port,
        peer=Peer(public_key=public_key, endpoint=endpoint, allowed_ips=allowed_ips,
                  persistent_keepalive=keepalive),
    )
    return gateway, GatewaySecrets(private_key=private_key, preshared_key=preshared_key)
