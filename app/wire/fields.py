"""Field rules shared by `braid import`, the profile loader and the helper.

Each check takes a value and returns it (normalised where the kernel would normalise
it), or raises :class:`FieldError` with a reason that says what is wrong and, where it
helps, what to write instead. Callers add where the value came from: the helper the
field path of the desired state (``tunnels[0].mtu``), the importer the file and line.
The reason never quotes a value that could be a key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable

__all__ = [
    "CLASS_RE",
    "GATEWAY_NAME_MAX",
    "GATEWAY_NAME_RE",
    "IFACE_RE",
    "KEEPALIVE_MAX",
    "MTU_MAX",
    "MTU_MIN",
    "PROFILE_NAME_RE",
    "FieldError",
    "check_class_name",
    "check_dns_server",
    "check_endpoint",
    "check_endpoint_literal",
    "check_gateway_name",
    "check_host_address",
    "check_iface",
    "check_interface_address",
    "check_keepalive",
    "check_key",
    "check_mtu",
    "check_network",
    "check_port",
    "check_probe",
    "check_profile_name",
    "check_search_domain",
    "check_tunnel_address",
    "parse_port",
    "parse_whole",
]


class FieldError(ValueError):
    """A value breaks a field rule; ``str()`` is the reason."""


# A gateway's tunnel is br-<name>, and a Linux interface name has at most 15 characters.
GATEWAY_NAME_MAX = 12
# \Z, not $: "$" also matches before a trailing newline, which must not pass.
IFACE_RE = re.compile(rf"\Abr-[a-z0-9][a-z0-9-]{{0,{GATEWAY_NAME_MAX - 1}}}\Z")
GATEWAY_NAME_RE = re.compile(rf"\A[a-z][a-z0-9-]{{0,{GATEWAY_NAME_MAX - 1}}}\Z")
PROFILE_NAME_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z")
CLASS_RE = re.compile(r"\A[a-z][a-z0-9_-]{0,15}\Z")
_PORT_RE = re.compile(r"\A[0-9]{1,5}\Z")
_WHOLE_RE = re.compile(r"\A[0-9]{1,9}\Z")
_HOST_LABEL_RE = re.compile(r"\A(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")

# IPv6 needs 1280 on every link (RFC 8200); 9000 is a jumbo frame. One range for
# import and helper alike.
MTU_MIN, MTU_MAX = 1280, 9000
KEEPALIVE_MAX = 65535


def check_iface(value: str) -> str:
    if not IFACE_RE.match(value):
        raise FieldError(
            f"{value!r} is not a Braid interface name (br- then 1-12 of a-z 0-9 -, "
            "starting with a letter or digit)"
        )
    return value


def check_gateway_name(value: str) -> str:
    if not GATEWAY_NAME_RE.match(value):
        raise FieldError(
            f"{value!r} is not a gateway name: 1-12 characters, lower-case letters, digits "
            "and '-', starting with a letter"
        )
    return value


def check_profile_name(value: str) -> str:
    if not PROFILE_NAME_RE.match(value):
        hint = " (names are lower case)" if PROFILE_NAME_RE.match(value.lower()) else ""
        raise FieldError(
            f"{value!r} is not a profile name{hint}: 1-32 characters, lower-case letters, "
            "digits, '_' and '-', starting with a letter or digit"
        )
    return value


def check_class_name(value: str) -> str:
    if not CLASS_RE.match(value):
        raise FieldError(f"{value!r} is not a class name (a-z 0-9 _ -, starting with a-z)")
    return value


def check_key(value: str) -> str:
    """A WireGuard key: base64 of exactly 32 bytes. The reason never quotes the value."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FieldError(
            "is not base64 (a WireGuard key is 44 characters ending in '=')"
        ) from None
    if len(raw) != 32:
        raise FieldError(f"decodes to {len(raw)} bytes, a WireGuard key has 32")
    return value


def _whole(value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{value!r} is not a whole number")
    if not low <= value <= high:
        raise FieldError(f"{value} is out of range {low}..{high}")
    return value


def check_mtu(value: int) -> int:
    return _whole(value, MTU_MIN, MTU_MAX)


def check_port(value: int) -> int:
    return _whole(value, 1, 65535)


def check_keepalive(value: int) -> int:
    """Seconds between keepalives, 1..65535 (off is no value at all)."""
    return _whole(value, 1, KEEPALIVE_MAX)


def parse_port(text: str) -> int:
    """A port written as decimal ASCII digits ("²" is a digit to str.isdigit, not here)."""
    if not _PORT_RE.match(text):
        raise FieldError(f"port {text!r} is not a number from 1 to 65535")
    try:
        return check_port(int(text))
    except FieldError:
        raise FieldError(f"port {text!r} is not a number from 1 to 65535") from None


def parse_whole(text: str, check: Callable[[int], int]) -> int:
    """A whole number written as ASCII decimal digits (not "²", "1_000" or "+5"), then
    held to ``check`` (check_mtu, check_port, ...)."""
    if not _WHOLE_RE.match(text):
        raise FieldError(f"{text!r} is not a whole number")
    return check(int(text))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:
        # A scope id (fe80::1%eth0) names an interface: never meaningful here, and a
        # way to smuggle text into places that take an address.
        raise FieldError(f"{text!r}: scope ids (%...) are not allowed")
    return ipaddress.ip_address(text)


def check_interface_address(value: str) -> str:
    """An address with an optional prefix ("10.0.0.2/24"; a bare one gets /32 or /128)."""
    if "%" in value:
        raise FieldError(f"{value!r}: scope ids (%...) are not allowed")
    try:
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise FieldError(f"{value!r} is not an IP address with an optional /prefix") from None


def check_tunnel_address(value: str) -> str:
    """A tunnel's address as a .conf writes it: an address with an optional prefix
    (the client's plan makes the prefix a route), not unspecified, loopback, link-local
    or multicast."""
    text = check_interface_address(value)
    ip = ipaddress.ip_interface(text).ip
    if ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_multicast:
        raise FieldError(f"{value!r} cannot be a tunnel's address (unspecified, loopback, "
                         "link-local or multicast)")
    return text


def check_host_address(value: str) -> str:
    """A tunnel's own address as the helper installs it: one host (/32 or /128), not
    unspecified, loopback, link-local or multicast."""
    text = check_tunnel_address(value)
    iface = ipaddress.ip_interface(text)
    full = 32 if iface.version == 4 else 128
    if iface.network.prefixlen != full:
        raise FieldError(f"{value!r} is not a host address (write /{full}: a tunnel's "
                         "address is one host; its network is a route)")
    return text


def check_network(value: str, *, strict: bool = False) -> str:
    """A network ("10.0.0.0/8"). ``strict``: host bits are an error, else they are
    cleared as WireGuard does."""
    if "%" in value:
        raise FieldError(f"{value!r}: scope ids (%...) are not allowed")
    try:
        return str(ipaddress.ip_network(value, strict=strict))
    except ValueError:
        if strict:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                pass
            else:
                raise FieldError(f"{value!r} has host bits set (a network such as "
                                 f"{ipaddress.ip_network(value, strict=False)})") from None
        raise FieldError(f"{value!r} is not an IP network such as 10.0.0.0/24") from None


def _is_hostname(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    return len(value) <= 253 and all(_HOST_LABEL_RE.match(label) for label in labels)


def check_endpoint(value: str) -> str:
    """"host:port" or "[v6addr]:port" as a .conf writes it (a host name is allowed: the
    client resolves it); kept as written."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise FieldError(f"{value!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        try:
            ip = _ip(host[1:-1])
        except ValueError as exc:
            raise FieldError(str(exc) if isinstance(exc, FieldError)
                             else f"{host!r} is not an IPv6 address") from None
        if ip.version != 6:
            raise FieldError(f"{host!r}: brackets are for IPv6 addresses")
    elif ":" in host:
        raise FieldError(f"{value!r}: write an IPv6 endpoint as [address]:port")
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not _is_hostname(host) or host.replace(".", "").isdigit():
                raise FieldError(f"{host!r} is neither an IP address nor a host name") from None
    parse_port(port)
    return value


def check_endpoint_literal(value: str) -> str:
    """An IP literal and port, normalised ("1.2.3.4:51820", "[2001:db8::1]:51820"): what
    the helper hands WireGuard, so no host names (the client resolves them)."""
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep:
        raise FieldError("not an IP:port")
    try:
        ip = _ip(host)
    except FieldError:
        raise
    except ValueError:
        raise FieldError("not an IP:port (host names are resolved by the client)") from None
    if ip.version == 6 and not bracketed:
        raise FieldError("not an IP:port (write IPv6 as [addr]:port)")
    if ip.version == 4 and bracketed:
        raise FieldError("not an IP:port (brackets are for IPv6)")
    number = parse_port(port)
    return f"[{ip}]:{number}" if ip.version == 6 else f"{ip}:{number}"


def _an_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``_ip`` with any other refusal said as "not an IP address"."""
    try:
        return _ip(value)
    except FieldError:
        raise
    except ValueError:
        raise FieldError(f"{value!r} is not an IP address") from None


def check_dns_server(value: str) -> str:
    """A DNS server as a gateway names it (``DNS = 10.8.0.1``): an IP literal reached
    through the tunnels, so not unspecified, loopback (a local resolver is not the
    gateway's), link-local (no scope ids) or multicast. Normalised."""
    ip = _an_ip(value)
    if ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_multicast:
        raise FieldError(f"{value!r} cannot be a gateway's DNS server (unspecified, loopback, "
                         "link-local or multicast): write the address of the server the "
                         "gateway's file names")
    return str(ip)


def check_search_domain(value: str) -> str:
    """A search (and routing) domain: a DNS name of letters, digits and '-' (IDNs as
    their xn-- form), labels of 1-63, at most 253 characters; lower-cased, a trailing dot
    dropped. Nothing else reaches resolv.conf or systemd-resolved."""
    name = value[:-1] if value.endswith(".") else value
    if not name or not _is_hostname(name) or name.replace(".", "").isdigit():
        raise FieldError(f"{value[:64]!r} is not a search domain (a DNS name such as corp.example: "
                         "letters, digits, '-' and dots)")
    return name.lower()


def check_probe(value: str) -> str:
    """The engine's probe target: an IPv4 address (its probes are ICMPv4 echoes)."""
    ip = _an_ip(value)
    if ip.version != 4:
        raise FieldError(f"{value!r} is not an IPv4 address (probes are ICMPv4 echoes)")
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        raise FieldError(f"{value!r} cannot answer probes through a tunnel")
    return str(ip)
