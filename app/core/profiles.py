"""Profiles: a named set of gateways, kept as TOML in the config dir, keys in the keyring.

A profile file never holds a key. Its format is in docs/profiles.md; everything read
from it is validated as strictly as an imported .conf, because the engine hands these
values to the privileged helper.
"""

from __future__ import annotations

import binascii
import ipaddress
import logging
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from app.core.errors import BraidError
from app.core.secrets import KeyKind, KeyStore, KeyTransaction, key_user

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PROFILE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
GATEWAY_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
INTERFACE_RE = re.compile(r"^br-[a-z0-9][a-z0-9-]{0,11}$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
MTU_RANGE = (576, 65535)
_HEADER = (
    "# Braid profile. Keys are not here: they are in the system keyring\n"
    "# (service \"braid\", user \"<profile>/<gateway>/private\"). Format: docs/profiles.md\n"
)


# ---- the model (the contract other areas use) ---------------------------------------

@dataclass(frozen=True)
class Peer:
    public_key: str  # base64, 32 bytes
    endpoint: str | None  # "host:port" as written in the .conf (may be a hostname)
    allowed_ips: tuple[str, ...]
    persistent_keepalive: int | None


@dataclass(frozen=True)
class Gateway:
    name: str  # ^[a-z][a-z0-9-]{0,11}$
    interface: str  # default "br-" + name
    addresses: tuple[str, ...]  # CIDR
    dns: tuple[str, ...]
    mtu: int | None
    listen_port: int | None
    peer: Peer
    cost: float = 1.0  # relative cost (>= 0); scoring normalises it
    probe: str | None = None  # IPv4 address the engine pings through this tunnel


@dataclass(frozen=True)
class Weights:
    latency: float = 0.4
    loss: float = 0.3
    cost: float = 0.3
    jitter: float = 0.0


@dataclass(frozen=True)
class Profile:
    name: str  # ^[a-z0-9][a-z0-9_-]{0,31}$
    gateways: tuple[Gateway, ...]
    weights: Weights = Weights()
    lab: str | None = None  # set for a lab's profile ("lab-<lab>")

    def gateway(self, name: str) -> Gateway:
        for gw in self.gateways:
            if gw.name == name:
                return gw
        raise KeyError(name)


@dataclass(frozen=True)
class GatewaySecrets:
    private_key: str  # base64; never printed, logged or written to a non-0600 file
    preshared_key: str | None

    def __repr__(self) -> str:  # a stray log line or traceback must not show keys
        psk = "set" if self.preshared_key else "none"
        return f"GatewaySecrets(private_key=<hidden>, preshared_key=<{psk}>)"


# ---- field checks (shared with the .conf parser; ValueError says what is wrong) -----

def check_key(value: str) -> str:
    """A WireGuard key: base64 of exactly 32 bytes."""
    try:
        raw = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("is not base64 (a WireGuard key is 44 characters ending in '=')")\
            from None
    if len(raw) != 32:
        raise ValueError(f"decodes to {len(raw)} bytes, a WireGuard key has 32")
    return value


def check_interface_address(value: str) -> str:
    """An interface address with its prefix ("10.0.0.2/32"); a bare address gets /32 or /128."""
    try:
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address with an optional /prefix") from None


def check_network(value: str) -> str:
    """A network ("0.0.0.0/0"); host bits are cleared as WireGuard does."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP network such as 10.0.0.0/24") from None


def _is_hostname(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    return len(value) <= 253 and all(_HOST_LABEL_RE.match(label) for label in labels)


def check_dns(value: str) -> str:
    """A DNS server address, or (as wg-quick allows) a search domain."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _is_hostname(value) or value.replace(".", "").isdigit():
        raise ValueError(f"{value!r} is neither an IP address nor a search domain")
    return value


def check_endpoint(value: str) -> str:
    """"host:port" or "[v6addr]:port", port 1-65535; kept as written."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 endpoint as [address]:port")
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not _is_hostname(host) or host.replace(".", "").isdigit():
                raise ValueError(f"{host!r} is neither an IP address nor a host name")\
                    from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")
    return value


def check_int(value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{value!r} is not a whole number from {low} to {high}")
    return value


def check_cost(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not a number >= 0")
    return float(value)


def check_probe(value: str) -> str:
    """The engine's probe target: an IPv4 address (its probes are ICMPv4 echoes)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    if ip.version != 4:
        raise ValueError(f"{value!r} is not an IPv4 address (probes are ICMPv4 echoes)")
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        raise ValueError(f"{value!r} cannot answer probes through a tunnel")
    return str(ip)


def check_gateway_name(value: str) -> str:
    if not GATEWAY_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a gateway name: 1-12 characters, lower-case letters, digits "
            f"and '-', starting with a letter")
    return value


def check_profile_name(value: str) -> str:
    if not PROFILE_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a profile name: 1-32 characters, lower-case letters, digits, "
            f"'_' and '-', starting with a letter or digit")
    return value


def check_interface(value: str) -> str:
    if not INTERFACE_RE.match(value):
        raise ValueError(f"{value!r} is not a Braid interface name (br- and at most 12 "
                         f"lower-case letters, digits or '-')")
    return value


@contextmanager
def _field(name: str) -> Iterator[None]:
    """Prefix a ValueError raised inside with the field's name."""
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def normalize_gateway(gw: Gateway) -> Gateway:
    """``gw`` with every field checked and lists in canonical form (CIDR with prefix,
    networks without host bits); ValueError names the field that is wrong."""
    with _field("name"):
        check_gateway_name(gw.name)
    with _field("interface"):
        check_interface(gw.interface)
    with _field("addresses"):
        if not gw.addresses:
            raise ValueError("at least one address is needed")
        addresses = tuple(check_interface_address(a) for a in gw.addresses)
    with _field("dns"):
        dns = tuple(check_dns(d) for d in gw.dns)
    with _field("mtu"):
        if gw.mtu is not None:
            check_int(gw.mtu, *MTU_RANGE)
    with _field("listen_port"):
        if gw.listen_port is not None:
            check_int(gw.listen_port, 1, 65535)
    with _field("cost"):
        cost = check_cost(gw.cost)
    with _field("probe"):
        probe = None if gw.probe is None else check_probe(gw.probe)
    peer = gw.peer
    with _field("peer.public_key"):
        check_key(peer.public_key)
    with _field("peer.endpoint"):
        if peer.endpoint is not None:
            check_endpoint(peer.endpoint)
    with _field("peer.allowed_ips"):
        if not peer.allowed_ips:
            raise ValueError("at least one network is needed")
        allowed_ips = tuple(check_network(n) for n in peer.allowed_ips)
    with _field("peer.persistent_keepalive"):
        if peer.persistent_keepalive is not None:
            check_int(peer.persistent_keepalive, 1, 65535)
    return replace(gw, addresses=addresses, dns=dns, cost=cost, probe=probe,
                   peer=replace(peer, allowed_ips=allowed_ips))


def validate_profile(profile: Profile) -> Profile:
    """``profile`` with its gateways normalised (see normalize_gateway); BraidError
    unless every field is valid."""
    where = f"profile {profile.name!r}"
    try:
        check_profile_name(profile.name)
    except ValueError as exc:
        raise BraidError(f"{where}: {exc}", "choose another profile name") from None
    if not profile.gateways:
        raise BraidError(f"{where} has no gateways", "import at least one .conf file")
    gateways = []
    for gw in profile.gateways:
        try:
            gateways.append(normalize_gateway(gw))
        except ValueError as exc:
            raise BraidError(f"{where}, gateway {gw.name!r}: {exc}",
                             "fix the gateway's .conf and import it again") from None
    for attr in ("name", "interface"):
        seen: set[str] = set()
        for gw in profile.gateways:
            value = getattr(gw, attr)
            if value in seen:
                raise BraidError(f"{where}: two gateways have the {attr} {value!r}",
                                 "give each gateway its own name (braid import --name)")
            seen.add(value)
    w = profile.weights
    try:
        for value in (w.latency, w.loss, w.cost, w.jitter):
            check_cost(value)
    except ValueError as exc:
        raise BraidError(f"{where}: weight {exc}", "weights are numbers >= 0") from None
    if w.latency + w.loss + w.cost + w.jitter <= 0:
        raise BraidError(f"{where}: all weights are 0", "give at least one weight > 0")
    return replace(profile, gateways=tuple(gateways))


def validate_secrets(profile: str, gateway: str, secrets: GatewaySecrets) -> None:
    for kind, value in (("private", secrets.private_key), ("preshared", secrets.preshared_key)):
        if value is None:
            continue
        try:
            check_key(value)
        except ValueError as exc:
            raise BraidError(f"profile {profile!r}, gateway {gateway!r}: {kind} key {exc}",
                             "fix the gateway's .conf and import it again") from None


# ---- TOML ----------------------------------------------------------------------------

def _gateway_doc(gw: Gateway) -> dict[str, Any]:
    """A gateway as TOML; None fields are left out (TOML has no null)."""
    doc = asdict(gw)
    peer = {k: v for k, v in doc.pop("peer").items() if v is not None}
    doc = {k: v for k, v in doc.items() if v is not None}
    doc["peer"] = peer
    return doc


def profile_to_toml(profile: Profile) -> str:
    doc: dict[str, Any] = {"version": FORMAT_VERSION, "name": profile.name}
    if profile.lab is not None:
        doc["lab"] = profile.lab
    doc["weights"] = asdict(profile.weights)
    doc["gateways"] = [_gateway_doc(gw) for gw in profile.gateways]
    return _HEADER + tomli_w.dumps(doc)


class _Table:
    """Typed reads from one TOML table; errors name the table and field; unknown keys
    are errors too (a typo must not silently become a default)."""

    def __init__(self, doc: Mapping[str, Any], where: str) -> None:
        self.doc = doc
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, kinds: type | tuple[type, ...], what: str,
             required: bool) -> Any:
        self.used.add(key)
        if key not in self.doc:
            if required:
                raise ValueError(f"{self.where}: {key} is missing")
            return None
        value = self.doc[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{self.where}: {key} must be {what}, not {value!r}")
        return value

    def str_(self, key: str, required: bool = True) -> Any:
        return self._get(key, str, "a string", required)

    def int_(self, key: str) -> Any:
        return self._get(key, int, "a whole number", False)

    def float_(self, key: str, default: float) -> float:
        value = self._get(key, (int, float), "a number", False)
        return default if value is None else float(value)

    def strs(self, key: str) -> tuple[str, ...]:
        value = self._get(key, list, "a list of strings", False) or []
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.where}: {key} must be a list of strings")
        return tuple(value)

    def table(self, key: str) -> _Table:
        value = self._get(key, dict, "a table", True)
        return _Table(value, f"{self.where}.{key}")

    def tables(self, key: str) -> list[_Table]:
        value = self._get(key, list, "an array of tables", True)
        if not all(isinstance(v, dict) for v in value):
            raise ValueError(f"{self.where}: {key} must be an array of tables ([[{key}]])")
        return [_Table(v, f"{self.where}.{key}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.doc) - self.used)
        if unknown:
            raise ValueError(f"{self.where}: unknown key {unknown[0]!r}")


def _gateway_from(t: _Table) -> Gateway:
    p = t.table("peer")
    peer = Peer(public_key=p.str_("public_key"), endpoint=p.str_("endpoint", required=False),
                allowed_ips=p.strs("allowed_ips"),
                persistent_keepalive=p.int_("persistent_keepalive"))
    p.done()
    gw = Gateway(name=t.str_("name"), interface=t.str_("interface"), addresses=t.strs("addresses"),
                 dns=t.strs("dns"), mtu=t.int_("mtu"), listen_port=t.int_("listen_port"),
                 peer=peer, cost=t.float_("cost", 1.0), probe=t.str_("probe", required=False))
    t.done()
    return gw


def profile_from_toml(doc: Mapping[str, Any]) -> Profile:
    """A Profile from parsed TOML; ValueError says which field is wrong. Validate the
    result with validate_profile()."""
    top = _Table(doc, "profile")
    version = top.int_("version")
    if version != FORMAT_VERSION:
        raise ValueError(f"format version {version!r} is not {FORMAT_VERSION}")
    w = top.table("weights") if "weights" in doc else _Table({}, "weights")
    defaults = Weights()
    weights = Weights(latency=w.float_("latency", defaults.latency),
                      loss=w.float_("loss", defaults.loss),
                      cost=w.float_("cost", defaults.cost),
                      jitter=w.float_("jitter", defaults.jitter))
    w.done()
    profile = Profile(name=top.str_("name"), lab=top.str_("lab", required=False),
                      gateways=tuple(_gateway_from(g) for g in top.tables("gateways")),
                      weights=weights)
    top.done()
    return profile


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (0600) so a reader sees the old file or the new one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---- the store -------------------------------------------------------------------------

@dataclass
class ProfileStore:
    """Profiles in ``<config_dir>/profiles/<name>.toml``; keys in the keyring.

    config_dir defaults to $BRAID_CONFIG_DIR, else platformdirs' user config dir for
    "braid" (~/.config/braid). The keyring is only touched by load_secrets, save and
    delete, so listing and showing profiles work without one.
    """

    config_dir: Path | None = None
    _keys: KeyStore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.config_dir is None:
            env = os.environ.get("BRAID_CONFIG_DIR")
            self.config_dir = Path(env) if env else Path(platformdirs.user_config_dir("braid"))

    @property
    def profiles_dir(self) -> Path:
        assert self.config_dir is not None
        return self.config_dir / "profiles"

    def path(self, name: str) -> Path:
        try:
            check_profile_name(name)
        except ValueError as exc:
            raise BraidError(str(exc), "list profiles with `braid profiles`") from None
        return self.profiles_dir / f"{name}.toml"

    def _keystore(self) -> KeyStore:
        if self._keys is None:
            self._keys = KeyStore()
        return self._keys

    def names(self) -> list[str]:
        if not self.profiles_dir.is_dir():
            return []
        return sorted(p.stem for p in self.profiles_dir.glob("*.toml")
                      if PROFILE_NAME_RE.match(p.stem))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str) -> Profile:
        path = self.path(name)
        fix = f"import the gateways again (braid import FILE.conf --profile {name}) or " \
              f"delete the profile (braid profile delete {name})"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none yet"
            raise BraidError(f"no profile named {name!r} (profiles: {known})",
                             "create it with `braid import FILE.conf --profile NAME`") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BraidError(f"cannot read profile {path}: {exc}", fix) from None
        try:
            profile = profile_from_toml(tomllib.loads(text))
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            raise BraidError(f"profile file {path} is broken: {exc}", fix) from None
        if profile.name != name:
            raise BraidError(f"profile file {path} names itself {profile.name!r}", fix)
        try:
            return validate_profile(profile)
        except BraidError as exc:
            raise BraidError(f"profile file {path}: {exc.what}", fix) from None

    def load_secrets(self, profile: Profile) -> dict[str, GatewaySecrets]:
        keys = self._keystore()
        out: dict[str, GatewaySecrets] = {}
        for gw in profile.gateways:
            private = keys.get(key_user(profile.name, gw.name, "private"))
            if private is None:
                fix = ("rebuild the lab (braid lab up)" if profile.lab else
                       f"import its .conf again: braid import FILE.conf --profile "
                       f"{profile.name} --name {gw.name}")
                raise BraidError(f"the keyring has no private key for gateway {gw.name!r} "
                                 f"of profile {profile.name!r}", fix)
            secrets = GatewaySecrets(private_key=private, preshared_key=keys.get(
                key_user(profile.name, gw.name, "preshared")))
            validate_secrets(profile.name, gw.name, secrets)
            out[gw.name] = secrets
        return out

    def _previous(self, name: str) -> Profile | None:
        """The saved version of a profile, if it is readable."""
        if not self.exists(name):
            return None
        try:
            return self.load(name)
        except BraidError as exc:
            log.warning("replacing unreadable profile %s: %s", name, exc.what)
            return None

    def save(self, profile: Profile, secrets: Mapping[str, GatewaySecrets]) -> None:
        """Write ``profile`` and its keys, all or nothing.

        ``secrets`` has an entry for each gateway whose keys change (a new import); a
        gateway without one keeps the keys the keyring already holds (and must have
        them). Keys of gateways the profile no longer has are removed.
        """
        profile = validate_profile(profile)
        names = {gw.name for gw in profile.gateways}
        for gw_name, gw_secrets in secrets.items():
            if gw_name not in names:
                raise BraidError(f"keys given for gateway {gw_name!r}, which profile "
                                 f"{profile.name!r} does not have", "this is a bug in the caller")
            validate_secrets(profile.name, gw_name, gw_secrets)
        path = self.path(profile.name)
        previous = self._previous(profile.name)
        keys = self._keystore()
        for gw in profile.gateways:
            if gw.name not in secrets and \
                    keys.get(key_user(profile.name, gw.name, "private")) is None:
                raise BraidError(f"gateway {gw.name!r} of profile {profile.name!r} has no key "
                                 f"in the keyring and none was given",
                                 f"import its .conf: braid import FILE.conf --profile "
                                 f"{profile.name} --name {gw.name}")
        txn = KeyTransaction(keys)
        try:
            for gw_name, gw_secrets in secrets.items():
                txn.set(key_user(profile.name, gw_name, "private"), gw_secrets.private_key)
                psk_user = key_user(profile.name, gw_name, "preshared")
                if gw_secrets.preshared_key is None:
                    txn.delete(psk_user)
                else:
                    txn.set(psk_user, gw_secrets.preshared_key)
            try:
                _write_atomically(path, profile_to_toml(profile))
            except OSError as exc:
                raise BraidError(f"cannot write profile {path}: {exc}",
                                 "check that the config dir is writable (BRAID_CONFIG_DIR)") \
                    from None
        except BaseException:
            txn.rollback()
            raise
        if previous is not None:
            for gw in previous.gateways:
                if gw.name not in names:
                    self._forget_keys(profile.name, gw.name)

    def _forget_keys(self, profile: str, gateway: str) -> None:
        """Remove a gateway's keys after its profile no longer names it."""
        kinds: tuple[KeyKind, ...] = ("private", "preshared")
        for kind in kinds:
            try:
                self._keystore().delete(key_user(profile, gateway, kind))
            except BraidError as exc:
                log.warning("could not remove the %s key of %s/%s: %s", kind, profile,
                            gateway, exc.what)

    def _gateway_names(self, name: str) -> list[str]:
        """The gateways a profile names, even from a file too broken to load, so that
        deleting a broken profile still removes its keys."""
        try:
            return [gw.name for gw in self.load(name).gateways]
        except BraidError:
            pass
        try:
            doc = tomllib.loads(self.path(name).read_text(encoding="utf-8"))
            gateways = doc.get("gateways", [])
            return [g["name"] for g in gateways
                    if isinstance(g, dict) and isinstance(g.get("name"), str)]
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError, TypeError):
            log.warning("profile %s is unreadable; its keys (if any) stay in the keyring", name)
            return []

    def delete(self, name: str) -> None:
        """Remove a profile and its keys (the keys first, restored if the file stays)."""
        path = self.path(name)
        if not path.is_file():
            raise BraidError(f"no profile named {name!r}", "list profiles with `braid profiles`")
        txn = KeyTransaction(self._keystore())
        try:
            for gw_name in self._gateway_names(name):
                txn.delete(key_user(name, gw_name, "private"))
                txn.delete(key_user(name, gw_name, "preshared"))
            try:
                path.unlink()
            except OSError as exc:
                raise BraidError(f"cannot delete {path}: {exc}",
                                 "check that the config dir is writable") from None
        except BaseException:
            txn.rollback()
            raise
