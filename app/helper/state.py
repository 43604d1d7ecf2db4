"""The desired state the helper reconciles the kernel to, and its validation.

Everything a caller sends is parsed here into frozen dataclasses before the helper
touches anything, so a bad field is refused with an error naming its path
(``tunnels[1].peers[0].endpoint: not an IP:port``) and nothing changes.

This module is pure (no I/O, no root): the engine imports it to build states, the
helper to check them. The confinement constants below are the only place the
helper's reach is defined; they mirror docs/internals.md.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

# ---- confinement (docs/internals.md) ----------------------------------------------
PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/braid/helper.sock"
DEFAULT_STATE_DIR = "/run/braid/helper-state"
VERBS: tuple[str, ...] = ("hello", "apply", "status", "down")
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
MAX_MESSAGE_BYTES = 1 << 20  # one request or reply, newline included

IFACE_RE = re.compile(r"^br-[a-z0-9][a-z0-9-]{0,11}$")
TABLE_MIN, TABLE_MAX = 52000, 52099
PRIORITY_MIN, PRIORITY_MAX = 5200, 5299
MARK_MASK = 0x0F000000
MARK_SHIFT = 24
BYPASS_MARK = 0x0F000000
# Path marks 0x01000000 … 0x0E000000: one per route target (table).
PATH_MARKS: frozenset[int] = frozenset(n << MARK_SHIFT for n in range(1, 15))
NFT_FAMILY, NFT_TABLE = "inet", "braid"
CLASS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")

# Size limits: generous for any real profile, small enough that a state is cheap
# to validate and reconcile.
MAX_TUNNELS = 32
MAX_PEERS = 16
MAX_ADDRESSES = 16
MAX_ALLOWED_IPS = 256
MAX_TABLES = TABLE_MAX - TABLE_MIN + 1
MAX_ROUTES = 64
MAX_NEXTHOPS = 16
MAX_RULES = 256
MAX_CLASSES = 14
MTU_MIN, MTU_MAX = 1280, 9000
WEIGHT_MIN, WEIGHT_MAX = 1, 256
DEFAULT_MTU = 1420  # wireguard-go's and wg-quick's default


class StateError(ValueError):
    """A field of a desired state is wrong. ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


# ---- the state ---------------------------------------------------------------------
@dataclass(frozen=True)
class PeerState:
    public_key: str
    preshared_key: str | None
    endpoint: str | None  # "IP:port" or "[IPv6]:port", an IP literal
    allowed_ips: tuple[str, ...]  # normalised networks
    persistent_keepalive: int | None


@dataclass(frozen=True)
class TunnelState:
    name: str
    private_key: str
    addresses: tuple[str, ...]  # interfaces, "198.19.0.2/32"
    mtu: int | None
    listen_port: int | None
    fwmark: int | None
    peers: tuple[PeerState, ...]

    @property
    def effective_mtu(self) -> int:
        return self.mtu if self.mtu is not None else DEFAULT_MTU


@dataclass(frozen=True)
class Nexthop:
    dev: str
    weight: int = 1


@dataclass(frozen=True)
class RouteState:
    dst: str  # normalised network
    nexthops: tuple[Nexthop, ...]


@dataclass(frozen=True)
class TableState:
    id: int
    routes: tuple[RouteState, ...]


@dataclass(frozen=True)
class RuleState:
    priority: int
    src: str | None
    fwmark: int | None
    fwmask: int | None
    action: str  # "lookup" | "unreachable"
    table: int | None

    def families(self) -> tuple[int, ...]:
        """IP versions the rule is installed for: a rule without src covers both,
        so a fail-closed mark rule also closes IPv6."""
        if self.src is None:
            return (4, 6)
        return (ipaddress.ip_network(self.src).version,)


@dataclass(frozen=True)
class MarkClass:
    name: str
    mark: int


@dataclass(frozen=True)
class Marking:
    bypass_mark: int
    classes: tuple[MarkClass, ...]
    masquerade: bool
    flush_marks: tuple[int, ...]


@dataclass(frozen=True)
class DesiredState:
    persistent: bool = False
    tunnels: tuple[TunnelState, ...] = ()
    tables: tuple[TableState, ...] = ()
    rules: tuple[RuleState, ...] = ()
    marking: Marking | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form (the inverse of :func:`parse_state`)."""
        doc: dict[str, Any] = asdict(self)
        return _lists(doc)  # type: ignore[no-any-return]

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    def redacted(self) -> dict[str, Any]:
        """The wire form with keys replaced, for logs and status."""
        doc = self.to_json()
        for t in doc["tunnels"]:
            t["private_key"] = "(hidden)"
            for p in t["peers"]:
                if p["preshared_key"] is not None:
                    p["preshared_key"] = "(hidden)"
        return doc


EMPTY_STATE = DesiredState()


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


# ---- validation --------------------------------------------------------------------
def parse_state(doc: Any) -> DesiredState:
    """Validate a decoded JSON document field by field; raise StateError on the first
    wrong field."""
    obj = _object(doc, "", {"persistent", "tunnels", "tables", "rules", "marking"})
    persistent = _bool(obj.get("persistent", False), "persistent")
    tunnels = tuple(
        _tunnel(t, f"tunnels[{i}]")
        for i, t in enumerate(_list(obj.get("tunnels", []), "tunnels", MAX_TUNNELS))
    )
    _unique([t.name for t in tunnels], "tunnels", "name")
    names = {t.name for t in tunnels}
    tables = tuple(
        _table(t, f"tables[{i}]", names)
        for i, t in enumerate(_list(obj.get("tables", []), "tables", MAX_TABLES))
    )
    _unique([t.id for t in tables], "tables", "id")
    table_ids = {t.id for t in tables}
    rules = tuple(
        _rule(r, f"rules[{i}]", table_ids)
        for i, r in enumerate(_list(obj.get("rules", []), "rules", MAX_RULES))
    )
    _unique(rules, "rules", "rule (same priority, selectors and action)")
    marking_doc = obj.get("marking")
    marking = None if marking_doc is None else _marking(marking_doc, "marking")
    return DesiredState(persistent, tunnels, tables, rules, marking)


def _object(
    doc: Any, path: str, allowed: set[str], required: Collection[str] = ()
) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise StateError(path, "must be a JSON object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        where = f"{path}." if path else ""
        raise StateError(f"{where}{unknown[0]}", "unknown field")
    for key in sorted(required):
        if key not in doc:
            raise StateError(f"{path}.{key}" if path else key, "missing")
    return doc


def _list(value: Any, path: str, limit: int, *, min_len: int = 0) -> list[Any]:
    if not isinstance(value, list):
        raise StateError(path, "must be a list")
    if len(value) > limit:
        raise StateError(path, f"too many entries ({len(value)} > {limit})")
    if len(value) < min_len:
        raise StateError(path, f"needs at least {min_len} entr{'y' if min_len == 1 else 'ies'}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise StateError(path, "must be true or false")
    return value


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    # bool is an int in Python; JSON true is not a number here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise StateError(path, "must be an integer")
    if not lo <= value <= hi:
        raise StateError(path, f"{value} is out of range {lo}..{hi}")
    return value


def _opt_int(value: Any, path: str, lo: int, hi: int) -> int | None:
    return None if value is None else _int(value, path, lo, hi)


def _str(value: Any, path: str, max_len: int = 256) -> str:
    if not isinstance(value, str):
        raise StateError(path, "must be a string")
    if len(value) > max_len:
        raise StateError(path, f"too long (more than {max_len} characters)")
    return value


def _unique(items: list[Any] | tuple[Any, ...], path: str, what: str) -> None:
    seen: set[Any] = set()
    for i, item in enumerate(items):
        if item in seen:
            raise StateError(f"{path}[{i}]", f"duplicate {what}")
        seen.add(item)


def check_iface(value: Any, path: str) -> str:
    name = _str(value, path, 64)
    if not IFACE_RE.match(name):
        raise StateError(
            path, f"{name!r} is not a Braid interface name (br- then 1-12 of a-z 0-9 -)"
        )
    return name


def check_key(value: Any, path: str) -> str:
    text = _str(value, path, 64)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise StateError(path, "not a base64 WireGuard key") from None
    if len(raw) != 32:
        raise StateError(path, f"not a WireGuard key (decodes to {len(raw)} bytes, not 32)")
    return text


def _mark(value: Any, path: str, allowed: frozenset[int] | None = None) -> int:
    mark = _int(value, path, 0, 0xFFFFFFFF)
    if mark & ~MARK_MASK:
        raise StateError(path, f"{mark:#010x} has bits outside Braid's mask {MARK_MASK:#010x}")
    if allowed is not None and mark not in allowed:
        raise StateError(path, f"{mark:#010x} is not a Braid path mark (0x01000000..0x0e000000)")
    return mark


def _interface_address(value: Any, path: str) -> str:
    text = _str(value, path, 64)
    if "/" not in text:
        raise StateError(path, f"{text!r} needs a prefix length (like 198.19.0.2/32)")
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        raise StateError(path, f"{text!r} is not an IP address with prefix") from None


def _network(value: Any, path: str, *, strict: bool) -> str:
    text = _str(value, path, 64)
    try:
        return str(ipaddress.ip_network(text, strict=strict))
    except ValueError:
        raise StateError(path, f"{text!r} is not a network (like 10.0.0.0/8)") from None


def _endpoint(value: Any, path: str) -> str:
    text = _str(value, path, 64)
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        bracketed = True
    else:
        bracketed = False
    if not sep or not port.isdigit():
        raise StateError(path, "not an IP:port")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise StateError(path, "not an IP:port (hostnames are resolved by the client)") from None
    if ip.version == 6 and not bracketed:
        raise StateError(path, "not an IP:port (write IPv6 as [addr]:port)")
    port_no = int(port)
    if not 1 <= port_no <= 65535:
        raise StateError(path, f"port {port_no} is out of range 1..65535")
    return f"[{ip}]:{port_no}" if ip.version == 6 else f"{ip}:{port_no}"


def _peer(doc: Any, path: str) -> PeerState:
    obj = _object(
        doc,
        path,
        {"public_key", "preshared_key", "endpoint", "allowed_ips", "persistent_keepalive"},
        {"public_key"},
    )
    psk = obj.get("preshared_key")
    endpoint = obj.get("endpoint")
    allowed = _list(obj.get("allowed_ips", []), f"{path}.allowed_ips", MAX_ALLOWED_IPS)
    return PeerState(
        public_key=check_key(obj["public_key"], f"{path}.public_key"),
        preshared_key=None if psk is None else check_key(psk, f"{path}.preshared_key"),
        endpoint=None if endpoint is None else _endpoint(endpoint, f"{path}.endpoint"),
        allowed_ips=tuple(
            # WireGuard itself masks host bits, so accept and normalise them.
            _network(a, f"{path}.allowed_ips[{i}]", strict=False)
            for i, a in enumerate(allowed)
        ),
        persistent_keepalive=_opt_int(
            obj.get("persistent_keepalive"), f"{path}.persistent_keepalive", 0, 65535
        ),
    )


def _tunnel(doc: Any, path: str) -> TunnelState:
    obj = _object(
        doc,
        path,
        {"name", "private_key", "addresses", "mtu", "listen_port", "fwmark", "peers"},
        {"name", "private_key"},
    )
    addresses = _list(obj.get("addresses", []), f"{path}.addresses", MAX_ADDRESSES)
    peers_doc = _list(obj.get("peers", []), f"{path}.peers", MAX_PEERS)
    peers = tuple(_peer(p, f"{path}.peers[{i}]") for i, p in enumerate(peers_doc))
    _unique([p.public_key for p in peers], f"{path}.peers", "public_key")
    fwmark = obj.get("fwmark")
    tunnel = TunnelState(
        name=check_iface(obj["name"], f"{path}.name"),
        private_key=check_key(obj["private_key"], f"{path}.private_key"),
        addresses=tuple(
            _interface_address(a, f"{path}.addresses[{i}]") for i, a in enumerate(addresses)
        ),
        mtu=_opt_int(obj.get("mtu"), f"{path}.mtu", MTU_MIN, MTU_MAX),
        listen_port=_opt_int(obj.get("listen_port"), f"{path}.listen_port", 1, 65535),
        fwmark=None if fwmark is None else _mark(fwmark, f"{path}.fwmark"),
        peers=peers,
    )
    _unique(list(tunnel.addresses), f"{path}.addresses", "address")
    return tunnel


def _table(doc: Any, path: str, tunnels: set[str]) -> TableState:
    obj = _object(doc, path, {"id", "routes"}, {"id"})
    routes = []
    for i, r in enumerate(_list(obj.get("routes", []), f"{path}.routes", MAX_ROUTES)):
        rpath = f"{path}.routes[{i}]"
        robj = _object(r, rpath, {"dst", "nexthops"}, {"dst", "nexthops"})
        hops = []
        for j, h in enumerate(
            _list(robj["nexthops"], f"{rpath}.nexthops", MAX_NEXTHOPS, min_len=1)
        ):
            hpath = f"{rpath}.nexthops[{j}]"
            hobj = _object(h, hpath, {"dev", "weight"}, {"dev"})
            dev = check_iface(hobj["dev"], f"{hpath}.dev")
            if dev not in tunnels:
                raise StateError(f"{hpath}.dev", f"{dev!r} is not one of this state's tunnels")
            hops.append(
                Nexthop(dev, _int(hobj.get("weight", 1), f"{hpath}.weight", WEIGHT_MIN, WEIGHT_MAX))
            )
        _unique([h.dev for h in hops], f"{rpath}.nexthops", "dev")
        routes.append(RouteState(_network(robj["dst"], f"{rpath}.dst", strict=True), tuple(hops)))
    _unique([r.dst for r in routes], f"{path}.routes", "dst")
    return TableState(_int(obj["id"], f"{path}.id", TABLE_MIN, TABLE_MAX), tuple(routes))


def _rule(doc: Any, path: str, tables: set[int]) -> RuleState:
    obj = _object(
        doc,
        path,
        {"priority", "src", "fwmark", "fwmask", "action", "table"},
        {"priority", "action"},
    )
    priority = _int(obj["priority"], f"{path}.priority", PRIORITY_MIN, PRIORITY_MAX)
    src_doc = obj.get("src")
    src = None if src_doc is None else _network(src_doc, f"{path}.src", strict=True)
    fwmark_doc, fwmask_doc = obj.get("fwmark"), obj.get("fwmask")
    fwmark = None if fwmark_doc is None else _mark(fwmark_doc, f"{path}.fwmark")
    fwmask = None if fwmask_doc is None else _mark(fwmask_doc, f"{path}.fwmask")
    if (fwmark is None) != (fwmask is None):
        raise StateError(f"{path}.fwmask", "fwmark and fwmask go together (both or neither)")
    if fwmark is not None and fwmask is not None:
        if fwmask == 0:
            raise StateError(f"{path}.fwmask", "must not be 0")
        if fwmark & ~fwmask:
            raise StateError(f"{path}.fwmark", "has bits outside fwmask")
    if src is None and fwmark is None:
        # A rule without selectors would capture all of the machine's traffic.
        raise StateError(path, "needs a selector: src, or fwmark with fwmask")
    action = _str(obj["action"], f"{path}.action", 16)
    table_doc = obj.get("table")
    if action == "lookup":
        if table_doc is None:
            raise StateError(f"{path}.table", "missing (a lookup rule names its table)")
        table = _int(table_doc, f"{path}.table", TABLE_MIN, TABLE_MAX)
        if table not in tables:
            raise StateError(f"{path}.table", f"{table} is not one of this state's tables")
    elif action == "unreachable":
        if table_doc is not None:
            raise StateError(f"{path}.table", "must be null for an unreachable rule")
        table = None
    else:
        raise StateError(f"{path}.action", f"{action!r} is not one of: lookup, unreachable")
    return RuleState(priority, src, fwmark, fwmask, action, table)


def _marking(doc: Any, path: str) -> Marking:
    obj = _object(
        doc, path, {"bypass_mark", "classes", "masquerade", "flush_marks"}, {"bypass_mark"}
    )
    bypass = _mark(obj["bypass_mark"], f"{path}.bypass_mark")
    if bypass != BYPASS_MARK:
        raise StateError(f"{path}.bypass_mark", f"must be Braid's bypass mark {BYPASS_MARK:#010x}")
    classes = []
    for i, c in enumerate(_list(obj.get("classes", []), f"{path}.classes", MAX_CLASSES)):
        cpath = f"{path}.classes[{i}]"
        cobj = _object(c, cpath, {"name", "mark"}, {"name", "mark"})
        name = _str(cobj["name"], f"{cpath}.name", 16)
        if not CLASS_RE.match(name):
            raise StateError(f"{cpath}.name", f"{name!r} is not a class name (a-z 0-9 _ -)")
        classes.append(MarkClass(name, _mark(cobj["mark"], f"{cpath}.mark", PATH_MARKS)))
    _unique([c.name for c in classes], f"{path}.classes", "name")
    flush = _list(obj.get("flush_marks", []), f"{path}.flush_marks", len(PATH_MARKS))
    flush_marks = tuple(
        _mark(m, f"{path}.flush_marks[{i}]", PATH_MARKS) for i, m in enumerate(flush)
    )
    _unique(list(flush_marks), f"{path}.flush_marks", "mark")
    return Marking(
        bypass_mark=bypass,
        classes=tuple(classes),
        masquerade=_bool(obj.get("masquerade", False), f"{path}.masquerade"),
        flush_marks=flush_marks,
    )


__all__ = [
    "BYPASS_MARK",
    "DEFAULT_SOCKET",
    "DEFAULT_STATE_DIR",
    "EMPTY_STATE",
    "MARK_MASK",
    "MAX_MESSAGE_BYTES",
    "PATH_MARKS",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "PROTOCOL_VERSION",
    "TABLE_MAX",
    "TABLE_MIN",
    "VERBS",
    "DesiredState",
    "MarkClass",
    "Marking",
    "Nexthop",
    "PeerState",
    "RouteState",
    "RuleState",
    "StateError",
    "TableState",
    "TunnelState",
    "parse_state",
]
