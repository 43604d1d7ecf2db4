"""Reading wg-quick .conf files: one file, one gateway (one [Peer]).

Follows wg-quick's own reading: `#` starts a comment, keys and section names are
case-insensitive, Address / DNS / AllowedIPs take comma-separated lists and may repeat.
Files saved by Windows tools are read too: UTF-8 with a byte-order mark, UTF-16 with
one. Everything else is strict, with the rules the helper applies (app/wire/fields.py),
so a file that imports is one that connects: an unknown section or key, a repeated
single-valued key, a second [Peer], a bad key, address or number is an error naming the
file, the line, what is wrong and what to write instead. wg-quick's own settings that
make no sense under Braid (Table, FwMark, the Pre/Post Up/Down hooks, SaveConfig) are
accepted with a warning that Braid ignores them: Braid sets routing tables and marks
itself and never runs hook commands.

No message quotes a line that cannot be parsed, nor the value of a key or of an unknown
setting: a private key pasted one character wrong must not end up in a terminal or a
log. Values of the other fields are quoted (they say what is wrong), but anything in a
message that looks like a key is hidden.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import BraidError
from app.core.profiles.model import Gateway, GatewaySecrets, Peer
from app.core.profiles.naming import gateway_name_from_file
from app.core.profiles.rules import (
    SOURCE_MAX,
    check_addresses,
    check_allowed_ips,
    check_dns,
    check_endpoint,
    check_gateway_name,
    check_key,
    check_network,
    check_tunnel_address,
    normalize_gateway,
)
from app.wire import fields

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024
_FIX = "fix the file (it is a wg-quick .conf: see `man wg-quick`) and import it again"
_FIX_ENCODING = ("save the file as UTF-8 (in Notepad: File > Save as, Encoding: UTF-8) "
                 "and import it again")

_KEY = "<44 characters ending in '='>"
# Each key's canonical spelling, and how to write it: every error about a key says so.
_INTERFACE_KEYS = {
    "PrivateKey": f"PrivateKey = {_KEY}",
    "Address": "Address = 10.8.0.2/32",
    "DNS": "DNS = 10.8.0.1",
    "MTU": "MTU = 1420",
    "ListenPort": "ListenPort = 51820",
}
_PEER_KEYS = {
    "PublicKey": f"PublicKey = {_KEY}",
    "PresharedKey": f"PresharedKey = {_KEY}",
    "Endpoint": "Endpoint = vpn.example.com:51820",
    "AllowedIPs": "AllowedIPs = 0.0.0.0/0, ::/0",
    "PersistentKeepalive": "PersistentKeepalive = 25",
}
_KEYS = {k.lower(): k for k in (*_INTERFACE_KEYS, *_PEER_KEYS)}
_EXAMPLES = {k.lower(): v for k, v in (_INTERFACE_KEYS | _PEER_KEYS).items()}
_IGNORED_KEYS = {k.lower(): k for k in (
    "Table", "FwMark", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig")}
# AmneziaWG's obfuscation settings (junk packets, padding, header values): common where
# WireGuard is blocked, and meaningless to (or breaking) plain WireGuard.
_AMNEZIA_KEYS = {k.lower(): k for k in (
    "Jc", "Jmin", "Jmax", "S1", "S2", "S3", "S4", "H1", "H2", "H3", "H4",
    "I1", "I2", "I3", "I4", "I5", "J1", "J2", "J3", "Itime")}
_LIST_KEYS = {"address", "dns", "allowedips"}
_OPTIONAL_KEYS = {"dns", "mtu", "listenport", "presharedkey", "persistentkeepalive"}
_SECTIONS = {"interface": "Interface", "peer": "Peer"}

# What a message may quote as a key or section name: a word, not a key's 44 characters.
_NAME_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9 _-]{0,23}\Z")
# A key is 44 characters; half of one (a key split by a stray space) is still hidden.
_KEYLIKE_RE = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")
_WORD_RE = re.compile(r"[A-Za-z]+")


def hide_keys(message: str) -> str:
    """``message`` with every run that could be (half of) a key, 20 or more base64
    characters, replaced: the last guard, for keys pasted into the wrong field.
    Addresses, ports and numbers never are such a run; a host name label that long is
    rare, and hiding it costs only a clue."""
    return _KEYLIKE_RE.sub("<hidden: looks like a key>", message)


def _squash(name: str) -> str:
    return re.sub(r"[\s_-]", "", name).lower()


@dataclass
class _Section:
    name: str  # "Interface" | "Peer"
    line: int
    values: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # key -> (line, item)
    lines: dict[str, int] = field(default_factory=dict)  # lower key -> first line

    @property
    def keys(self) -> dict[str, str]:
        return _INTERFACE_KEYS if self.name == "Interface" else _PEER_KEYS


class _Undecodable(Exception):
    def __init__(self, line: int, column: int, encoding: str) -> None:
        super().__init__(line, column, encoding)
        self.line, self.column, self.encoding = line, column, encoding


def _decode(data: bytes) -> str:
    """The text of ``data``: UTF-8, or UTF-16 where a byte-order mark says so (as
    Windows' Notepad saves "Unicode"); a UTF-8 byte-order mark is dropped."""
    encoding, shown, body = "utf-8", "UTF-8", data
    if data.startswith(codecs.BOM_UTF8):
        body = data[len(codecs.BOM_UTF8):]
    elif data.startswith(codecs.BOM_UTF16_LE):
        encoding, shown, body = "utf-16-le", "UTF-16", data[2:]
    elif data.startswith(codecs.BOM_UTF16_BE):
        encoding, shown, body = "utf-16-be", "UTF-16", data[2:]
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        before = body[: exc.start].decode(encoding, errors="replace")
        column = len(before.rsplit("\n", 1)[-1]) + 1
        raise _Undecodable(before.count("\n") + 1, column, shown) from None


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, line: int | None, message: str, fix: str = _FIX) -> BraidError:
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return BraidError(f"{where}: {hide_keys(message)}", fix)

    def read_text(self) -> str:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise BraidError(f"cannot read {self.path}: {exc.strerror or exc}",
                             "check the file name and that you may read it") from None
        if len(data) > MAX_BYTES:
            raise self.error(None, f"is larger than {MAX_BYTES // 1024} KiB; "
                                   f"it is not a wg-quick .conf",
                             "import the .conf file your provider gave you (a few lines)")
        try:
            text = _decode(data)
        except _Undecodable as exc:
            raise self.error(exc.line, f"is not {exc.encoding} text (column {exc.column} "
                                       f"cannot be read)", _FIX_ENCODING) from None
        if "\x00" in text:
            line = text[: text.index("\x00")].count("\n") + 1
            raise self.error(line, "has a NUL character: this is not a text file, or it is "
                                   "UTF-16 without a byte-order mark", _FIX_ENCODING)
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def sections(self, text: str, warn: Callable[[str], None]) -> list[_Section]:
        sections: list[_Section] = []
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                sections.append(self._header(number, line))
                continue
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not _NAME_RE.match(key):
                raise self.error(number, _unparsable(line))
            if not sections:
                raise self.error(number, f"{key} comes before any section; put [Interface] "
                                         f"(or [Peer]) on a line above it")
            self._add(sections[-1], number, key, value, warn)
        return sections

    def _header(self, number: int, line: str) -> _Section:
        if not line.endswith("]"):
            raise self.error(number, "a section header ends with ']'; write [Interface] "
                                     "or [Peer]")
        title = line[1:-1].strip()
        if title.lower() in _SECTIONS:
            return _Section(_SECTIONS[title.lower()], number)
        named = f" [{title}]" if _NAME_RE.match(title) else ""
        raise self.error(number, f"unknown section{named}; a wg-quick file has [Interface] "
                                 f"and [Peer]")

    def _add(self, section: _Section, number: int, key: str, value: str,
             warn: Callable[[str], None]) -> None:
        low = key.lower()
        if section.name == "Interface" and low in _IGNORED_KEYS:
            warn(hide_keys(f"{self.path}:{number}: Braid ignores {_IGNORED_KEYS[low]} (it "
                           f"sets its own routing tables and marks, and runs no hook "
                           f"commands)"))
            return
        if section.name == "Interface" and low in _AMNEZIA_KEYS:
            raise self.error(number, f"{_AMNEZIA_KEYS[low]}: AmneziaWG obfuscation is not "
                                     f"supported by Braid (it needs amneziawg-go); use a plain "
                                     f"WireGuard file from your provider",
                             "download a plain WireGuard configuration (not AmneziaWG) from "
                             "your provider and import that")
        known = {k.lower(): k for k in section.keys}
        if low not in known:
            raise self.error(number, _unknown_key(section, key))
        name = known[low]
        if not value:
            raise self.error(number, f"{name} has no value; write it like {_EXAMPLES[low]}, "
                                     f"or remove the line")
        if low in section.values and low not in _LIST_KEYS:
            raise self.error(number, f"{name} is given twice in [{section.name}] (first on "
                                     f"line {section.lines[low]}); keep one of them")
        items = [v.strip() for v in value.split(",")] if low in _LIST_KEYS else [value]
        if "" in items:
            raise self.error(number, f"{name} has an empty item (two commas, or one at an "
                                     f"end); write it like {_EXAMPLES[low]}")
        section.values.setdefault(low, []).extend((number, item) for item in items)
        section.lines.setdefault(low, number)


def _unknown_key(section: _Section, key: str) -> str:
    other = _PEER_KEYS if section.name == "Interface" else _INTERFACE_KEYS
    squashed = _squash(key)
    for name in section.keys:
        if _squash(name) == squashed:
            return f"unknown key {key!r} in [{section.name}]; write it as {name}"
    for name in other:
        if _squash(name) == squashed:
            place = "[Peer]" if section.name == "Interface" else "[Interface]"
            return f"{name} belongs in {place}, not in [{section.name}]; move it there"
    return (f"unknown key {key!r} in [{section.name}]; known keys: "
            f"{', '.join(section.keys)}")


def _unparsable(line: str) -> str:
    """Why a line is neither a section header nor 'Key = value', without quoting it."""
    word = _WORD_RE.match(line)
    name = _KEYS.get(word.group().lower()) if word else None
    if word and name:
        after = line[word.end():].lstrip()[:1]
        if after == ":":
            return f"{name} is followed by ':'; write it with '=': {_EXAMPLES[name.lower()]}"
        return f"{name} has no '='; write it like {_EXAMPLES[name.lower()]}"
    if _KEYLIKE_RE.search(line):
        return ("this line looks like a key on its own; put it after its name, like "
                f"PrivateKey = {_KEY}")
    return "this line is neither a [Section] header nor 'Key = value' (the line is not shown)"


class _Fields:
    """Checked values of one section; errors name the line of the offending key and
    say what to write."""

    def __init__(self, reader: _Reader, section: _Section) -> None:
        self.reader = reader
        self.section = section

    def _error(self, line: int, key: str, reason: str) -> BraidError:
        drop = ", or remove the line" if key in _OPTIONAL_KEYS else ""
        return self.reader.error(line, f"{_KEYS[key]}: {reason}; write it like "
                                       f"{_EXAMPLES[key]}{drop}")

    def all(self, key: str, check: Callable[[str], str]) -> list[str]:
        out = []
        for line, item in self.section.values.get(key, []):
            try:
                out.append(check(item))
            except ValueError as exc:
                raise self._error(line, key, str(exc)) from None
        return out

    def required(self, key: str, check: Callable[[str], str]) -> list[str]:
        if key not in self.section.values:
            raise self.reader.error(self.section.line,
                                    f"[{self.section.name}] has no {_KEYS[key]}; add a line "
                                    f"like {_EXAMPLES[key]}")
        return self.all(key, check)

    def every(self, key: str, check: Callable[[str], str],
              together: Callable[[tuple[str, ...]], tuple[str, ...]]) -> tuple[str, ...]:
        """A required list, each item held to ``check``, then all of them to
        ``together`` (counts, duplicates: reported on the key's first line)."""
        items = tuple(self.required(key, check))
        try:
            return together(items)
        except ValueError as exc:
            raise self.reader.error(self.section.lines[key], f"{_KEYS[key]}: {exc}") from None

    def optional(self, key: str, check: Callable[[str], str]) -> str | None:
        values = self.all(key, check)
        return values[0] if values else None

    def number(self, key: str, check: Callable[[int], int], *,
               none: tuple[str, ...] = ()) -> int | None:
        """A whole number held to ``check``; the words in ``none`` mean no value (as
        PersistentKeepalive = off, ListenPort = 0: wg(8) picks a port)."""
        raw = self.optional(key, str)
        if raw is None or raw.lower() in none:
            return None
        try:
            return fields.parse_whole(raw, check)
        except ValueError as exc:
            raise self._error(self.section.lines[key], key, str(exc)) from None


def _source(path: Path) -> str:
    """The file's name as the profile keeps it: printable, bounded."""
    name = "".join(c if c.isprintable() else "?" for c in path.name)
    return name[:SOURCE_MAX] or "?"


def parse_wg_quick(path: Path, *, name: str | None = None,
                   warn: Callable[[str], None] | None = None
                   ) -> tuple[Gateway, GatewaySecrets]:
    """Read one wg-quick file as a gateway named ``name`` (default: derived from the
    file's name, profiles/naming.py); its ``source`` is the file's name.

    Raises BraidError naming the file, the line, what is wrong and what to write.
    ``warn`` receives notes about settings Braid ignores (default: the log).
    """
    warn = warn or log.warning
    reader = _Reader(path)
    if name is None:
        gw_name = gateway_name_from_file(path.name)
    else:
        try:
            gw_name = check_gateway_name(name)
        except ValueError as exc:
            raise BraidError(f"--name for {path}: {exc}",
                             "choose another name, for example --name hk") from None

    sections = reader.sections(reader.read_text(), warn)
    interfaces = [s for s in sections if s.name == "Interface"]
    peers = [s for s in sections if s.name == "Peer"]
    if len(interfaces) > 1:
        raise reader.error(interfaces[1].line, "a second [Interface] section; a file has "
                                               "one [Interface] and one [Peer]")
    if len(peers) > 1:
        raise reader.error(peers[1].line,
                           "a second [Peer]: Braid takes one gateway (one peer) per file; "
                           "split it into one file per peer")
    if not interfaces:
        raise reader.error(None, "no [Interface] section; a wg-quick file starts with "
                                 "[Interface], then PrivateKey and Address")
    if not peers:
        raise reader.error(None, "no [Peer] section; add [Peer] with the server's "
                                 "PublicKey, Endpoint and AllowedIPs")

    iface = _Fields(reader, interfaces[0])
    private_key = iface.required("privatekey", check_key)[0]
    addresses = iface.every("address", check_tunnel_address, check_addresses)
    dns = tuple(iface.all("dns", check_dns))
    mtu = iface.number("mtu", fields.check_mtu)
    listen_port = iface.number("listenport", fields.check_port, none=("0",))

    peer = _Fields(reader, peers[0])
    public_key = peer.required("publickey", check_key)[0]
    preshared_key = peer.optional("presharedkey", check_key)
    endpoint = peer.required("endpoint", check_endpoint)[0]
    allowed_ips = peer.every("allowedips", check_network, check_allowed_ips)
    keepalive = peer.number("persistentkeepalive", fields.check_keepalive, none=("off", "0"))

    gateway = Gateway(
        name=gw_name, interface=f"br-{gw_name}", addresses=addresses, dns=dns, mtu=mtu,
        listen_port=listen_port,
        peer=Peer(public_key=public_key, endpoint=endpoint, allowed_ips=allowed_ips,
                  persistent_keepalive=keepalive),
        source=_source(path),
    )
    try:  # every field was checked above, with its line; this keeps it so
        gateway = normalize_gateway(gateway)
    except ValueError as exc:
        raise reader.error(None, str(exc)) from None
    return gateway, GatewaySecrets(private_key=private_key, preshared_key=preshared_key)
