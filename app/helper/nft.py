"""Braid's nft tables, rendered here from validated state and loaded atomically:
``inet braid`` (marking, :func:`render`) and ``inet braid_guard`` (the kill switch,
app/helper/guard.py).

No string from a caller reaches nft: every number and address in a ruleset passed
validation in app/wire/state.py, and the only names rendered are tunnel names that
matched Braid's interface pattern.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import re
import subprocess
from collections.abc import Iterable, Mapping

from app.helper.errors import KernelError
from app.wire.classes import APP_CLASSES, BULK, BYPASS, REALTIME
from app.wire.state import (
    BYPASS_CLASS_MARK,
    DEFAULT_CLASS,
    MARK_MASK,
    MARK_SHIFT,
    MPTCP_LOCAL_NET,
    NFT_FAMILY,
    NFT_TABLE,
    Marking,
)

TABLE = f"{NFT_FAMILY} {NFT_TABLE}"


def networks(allow: Iterable[str], version: int) -> list[str]:
    """``allow``'s networks of one IP version, merged: an nft interval set refuses
    overlapping elements (10.0.0.0/8 with 10.1.0.0/16)."""
    nets = [n for n in (ipaddress.ip_network(a) for a in allow) if n.version == version]
    return [str(n) for n in ipaddress.collapse_addresses(nets)]  # type: ignore[type-var]


def element_set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def names(tunnels: Iterable[str]) -> str:
    """Interface names as an nft set: exactly these, never a wildcard."""
    return element_set(f'"{n}"' for n in sorted(tunnels))


def allow_rules(allow: Iterable[str], verdict: str) -> list[str]:
    allow = list(allow)
    out = []
    for version, selector in ((4, "ip daddr"), (6, "ip6 daddr")):
        nets = networks(allow, version)
        if nets:
            out.append(f"{selector} {element_set(nets)} {verdict}")
    return out


# ---- classes (docs/classes.md) ---------------------------------------------------------
# Conntrack label bits Braid owns: a flow classified as default because nothing claimed it
# (the volume rule may make it bulk), and one that became bulk by volume.
LABEL_FALLTHROUGH = 112
LABEL_BULK_BY_VOLUME = 113
LABEL_REALTIME = 114  # a realtime flow, which realtime copies copy (app/helper/copies.py)
LABEL_PICKED_UP = 115  # a flow conntrack met again mid-stream, from a tunnel, after a flush
LABEL_SPREAD = 116  # a bulk flow dealt by spreading, which a rebalancing move may move
LABEL_BITS = (112, 113, 114, 115, 116)
# Conferencing selectors for flows of apps nobody pinned, to realtime (each range's
# source is in docs/classes.md): STUN/TURN, Teams, Zoom, Google Meet; DSCP EF and AF4x.
REALTIME_UDP_PORTS = ("3478-3481", "8801-8810", "19302-19309")
REALTIME_TCP_PORTS = ("3478-3481", "8801-8802")
REALTIME_DSCP = ("ef", "af41", "af42", "af43")
# Named counters: packets classified each way since the table was loaded.
COUNTER_SELECTOR, COUNTER_VOLUME, COUNTER_DEFAULT = "selector", "volume", "default"


def app_counter(cls: str) -> str:
    return f"app_{cls}"


def mark_chain(cls: str) -> str:
    return f"to_{cls}"


def spread_chain(mark: int) -> str:
    """The chain that sets one path's mark for bulk spreading (a slot's target)."""
    return f"spread_{mark >> MARK_SHIFT}"


def spread_rule(slots: tuple[int, ...]) -> str:
    """Bulk's one rule when it is spread (docs/multipath.md, "Bulk spreading"): each new
    bulk flow takes the next slot (``numgen inc``: a counter, so consecutive flows take
    consecutive slots, which the engine orders round-robin by weight) and jumps to that
    path's chain. Only a flow's first packet gets here: after it, the conntrack mark
    holds the path (stickiness, in ``output``), so re-weighting moves no running flow.
    One line, so that a re-weighting is a :func:`mark_update` like a switch."""
    arms = ", ".join(f"{i} : goto {spread_chain(m)}" for i, m in enumerate(slots))
    return f"numgen inc mod {len(slots)} vmap {{ {arms} }}"


_MARK_CHAIN = re.compile(r"^\tchain (to_[a-z][a-z0-9_-]*) \{\n\t\t(.*)\n\t\}$", re.M)


def mark_update(loaded: str, wanted: str, table: str = TABLE) -> str | None:
    """The commands that turn ``loaded`` into ``wanted`` when they differ only in the
    marks their ``to_<class>`` chains set (a switch: a class takes another path): each
    changed chain flushed and given its one rule again, in one transaction (~3x cheaper
    than reloading the whole table, and the flow counters carry on). None when anything
    else differs: then the table is loaded whole."""
    def split(text: str) -> tuple[str, dict[str, str]]:
        return _MARK_CHAIN.sub(r"\tchain \1 {}", text), dict(_MARK_CHAIN.findall(text))

    old_rest, old_marks = split(loaded)
    new_rest, new_marks = split(wanted)
    if old_rest != new_rest or old_marks.keys() != new_marks.keys():
        return None
    changed = [c for c in sorted(new_marks) if new_marks[c] != old_marks[c]]
    return "".join(f"flush chain {table} {c}\nadd rule {table} {c} {new_marks[c]}\n"
                   for c in changed)


def update(commands: str, table: str = TABLE) -> None:
    """Run ``commands`` (from :func:`mark_update`) as one transaction."""
    ok, _, err = _run(commands)
    if not ok:
        raise KernelError(f"nft refused a change of table {table}: {err}")


def render(marking: Marking, tunnels: Iterable[str] = (), allow: Iterable[str] = (),
           groups: tuple[Mapping[str, str], int] | None = None,
           addresses: Iterable[str] = (), copies: bool = False) -> str:
    """The table in nft's native syntax (nft 1.0.6 cannot express everything in JSON).
    ``tunnels``: this state's tunnel names (the masquerade's interfaces); ``allow``: the
    guard's allowed destinations, left unmarked so they route to main; ``groups``: the
    class groups (class -> path nft resolves, and their level), while they exist;
    ``addresses``: the tunnels' own addresses (a bypass flow routed with one as its
    source is masqueraded to the uplink's); ``copies``: realtime flows get conntrack
    label LABEL_REALTIME, by which ``ip braid_copy`` copies them (app/helper/copies.py).

    Each class's mark is set in a chain of its own (``to_<class>``), which the
    classification jumps to: precedence, strongest first, is the app's group, the
    conferencing selectors, volume (only for a flow that fell through to default),
    default."""
    mask = f"{MARK_MASK:#010x}"
    keep = f"{0xFFFFFFFF & ~MARK_MASK:#010x}"
    marks = {c.name: c.mark for c in marking.classes}
    if groups is not None:
        marks[BYPASS] = BYPASS_CLASS_MARK

    def to(cls: str) -> str:
        """Where a flow of ``cls`` goes (a class the state does not steer: default's)."""
        return f"goto {mark_chain(cls if cls in marks else DEFAULT_CLASS)}"

    volume = BULK in marks and marking.bulk_after_bytes is not None
    counters: list[str] = []
    body = [
        # The route hook re-routes a packet whose mark changed here.
        "type route hook output priority mangle; policy accept;",
        # WireGuard's own UDP sockets carry the bypass mark: never classify them.
        f"meta mark & {mask} == {marking.bypass_mark:#010x} return",
        # Someone else's mark (another VPN, a container runtime): not ours to change.
        "meta mark != 0x00000000 return",
        'oifname "lo" return',
        # Replies of inbound connections must leave the way their requests came; but a
        # flow picked up mid-stream from a tunnel (input chain) is one of ours seen the
        # wrong way round: its "replies" are the client's own packets, classified.
        f"ct direction reply ct label != {LABEL_PICKED_UP} return",
        # MPTCP subflows from the helper's endpoints are bound to their tunnel and routed
        # by their source (app/helper/mptcp.py), not by a class: without a path mark, no
        # flush of a moving class removes their entries (and their translation with
        # them; an inbound packet without an entry is dropped: a download would stall).
        f"ip saddr {MPTCP_LOCAL_NET} return",
        # The guard's allowed destinations (the LAN, exclusions) stay unmarked: the
        # guard's rule 5290 sends them to the main table, outside the tunnels.
        *allow_rules(allow, "return"),
    ]
    if volume:
        counters.append(COUNTER_VOLUME)
        # A default flow that has moved this much (both ways, conntrack's count) is bulk.
        # With masquerade (separate exits) a running flow cannot change path without
        # breaking: it is labelled bulk and keeps its path. On a shared exit it moves.
        body += [
            # Already bulk by volume: sticky, never counted again.
            f"ct label {LABEL_BULK_BY_VOLUME} ct mark & {mask} != 0x00000000 "
            f"meta mark set ct mark & {mask} return",
            f"ct label {LABEL_FALLTHROUGH} ct bytes > {marking.bulk_after_bytes} "
            f'counter name "{COUNTER_VOLUME}" ct label set {LABEL_BULK_BY_VOLUME}'
            + ("" if marking.masquerade else f" {to(BULK)}"),
        ]
    # Stickiness: a flow keeps the path mark saved when it started.
    body.append(f"ct mark & {mask} != 0x00000000 meta mark set ct mark & {mask} return")
    # Everything else is classified: new flows, but also flows that predate Braid and
    # packets conntrack has no entry for (untracked, or invalid such as the FIN of a flow
    # whose entry a flush removed). Letting those keep their route would send them out
    # through the main table, unencrypted: they go into a tunnel or meet the class's
    # unreachable rule instead. `ct mark set` is a no-op where there is no ct.
    if groups is not None:
        paths, level = groups
        for cls in APP_CLASSES:
            counters.append(app_counter(cls))
            # The group the socket was created in (it keeps it: docs/classes.md).
            body.append(f'socket cgroupv2 level {level} "{paths[cls]}" '
                        f'counter name "{app_counter(cls)}" {to(cls)}')
    if REALTIME in marks:
        counters.append(COUNTER_SELECTOR)
        rt = f'counter name "{COUNTER_SELECTOR}" {to(REALTIME)}'
        body += [
            f"udp dport {element_set(REALTIME_UDP_PORTS)} {rt}",
            f"tcp dport {element_set(REALTIME_TCP_PORTS)} {rt}",
            f"ip dscp {element_set(REALTIME_DSCP)} {rt}",
            f"ip6 dscp {element_set(REALTIME_DSCP)} {rt}",
        ]
    counters.append(COUNTER_DEFAULT)
    body.append(f'counter name "{COUNTER_DEFAULT}" '
                + (f"ct label set {LABEL_FALLTHROUGH} " if volume else "") + to(DEFAULT_CLASS))
    out = [f"table {TABLE} {{"]
    for name in counters:
        out += [f"\tcounter {name} {{", "\t}"]
    spread = marking.spread if BULK in marks else ()
    for cls, mark in sorted(marks.items()):
        m = f"{mark:#010x}"
        # One rule per chain (mark_update replaces it): the label goes on the same line.
        label = f" ct label set {LABEL_REALTIME}" if copies and cls == REALTIME else ""
        rule = f"meta mark set {m} ct mark set ct mark & {keep} | {m}{label}"
        if cls == BULK and spread:
            rule = spread_rule(spread)
        out += [f"\tchain {mark_chain(cls)} {{", f"\t\t{rule}", "\t}"]
    for mark in sorted(set(spread)):
        m = f"{mark:#010x}"
        set_mark = f"meta mark set {m} ct mark set ct mark & {keep} | {m}"
        # Labelled, so a rebalancing move may take it; not an MPTCP connection's first
        # subflow (its SYN carries MP_CAPABLE): its path is one of its subflows', and it
        # would count as the only flow of a path all the connection's subflows share.
        out += [f"\tchain {spread_chain(mark)} {{",
                f"\t\ttcp option mptcp exists {set_mark} return",
                f"\t\t{set_mark} ct label set {LABEL_SPREAD}", "\t}"]
    out += ["\tchain output {", *(f"\t\t{line}" for line in body), "\t}"]
    tunnels = sorted(tunnels)
    if tunnels:
        out += [
            "\tchain input {",
            "\t\ttype filter hook input priority filter; policy accept;",
            # Nothing connects in through a tunnel (the gateways, or the exit, translate
            # the client's address): a first packet from one is a straggler of a flow
            # whose entry a flush just removed. A TCP segment with ACK and no SYN is a
            # running flow's (a download's: its client only answers, so dropping the
            # server's segments would stall it for good, each retransmit dropped
            # again): it is taken, labelled, and the client's answers, which conntrack
            # now calls replies, are classified like any flow of ours (output chain).
            # Anything else new (a SYN, UDP, ICMP) is dropped: the client's own next
            # packet starts the flow again the right way round.
            f"\t\tiifname {names(tunnels)} ct state new tcp flags & (syn | ack) == ack "
            f"ct label set {LABEL_PICKED_UP} accept",
            f"\t\tiifname {names(tunnels)} ct state new drop",
            "\t}",
        ]
    nat = []
    if marking.masquerade and tunnels:
        # A flow routed into a tunnel after its source was chosen gets the tunnel's.
        # This state's tunnels by name: "br-*" is also Docker's bridges (br-<id>).
        nat.append(f"oifname {names(tunnels)} masquerade")
    if groups is not None:
        # A bypass flow whose first route lookup went into the guard's tunnel (its
        # source is that tunnel's address) leaves by the uplink: with the uplink's.
        bypass = f"meta mark & {mask} == {BYPASS_CLASS_MARK:#010x}"
        for version, selector in ((4, "ip saddr"), (6, "ip6 saddr")):
            own = networks(addresses, version)
            if own:
                nat.append(f"{bypass} {selector} {element_set(own)} masquerade")
    if nat:
        out += [
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            *(f"\t\t{line}" for line in nat),
            "\t}",
        ]
    out.append("}")
    return "\n".join(out) + "\n"


class _Nft:
    """libnftables in-process (what the nft binary is a front end to): a ruleset load
    costs ~0.2 ms instead of a ~13 ms process. The same text, the same atomic batch.
    Falls back to the binary where the library cannot be loaded."""

    def __init__(self) -> None:
        self._ctx: int | None = None
        self._lib: ctypes.CDLL | None = None
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            return
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
            fn.argtypes = [ctypes.c_void_p]
        for fn in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        ctx = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not ctx:
            return
        # Output and errors into buffers rather than the helper's stdout/stderr.
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        self._lib, self._ctx = lib, ctx

    def run(self, script: str) -> tuple[bool, str, str]:
        """Run nft commands; returns (succeeded, output, error text)."""
        if self._lib is None:
            done = subprocess.run(
                ["nft", "-f", "-"], input=script, capture_output=True, text=True,
                check=False, timeout=30,
            )  # fmt: skip
            return done.returncode == 0, done.stdout, done.stderr.strip()
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
        out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return rc == 0, out.decode(errors="replace"), err.decode(errors="replace").strip()


@functools.cache
def _nft() -> _Nft:
    # Made on first use, in the helper's network namespace (the context's socket is
    # bound to the namespace it was opened in).
    return _Nft()


def _run(script: str) -> tuple[bool, str, str]:
    return _nft().run(script)


def load(ruleset: str, table: str = TABLE) -> None:
    """Replace ``table`` in one transaction: declaring it first makes the delete valid
    whether or not it existed, and nothing is half-loaded if the new one is refused."""
    ok, _, err = _run(f"table {table}\ndelete table {table}\n{ruleset}")
    if not ok:
        raise KernelError(f"nft refused table {table}: {err}")


def delete(table: str = TABLE) -> bool:
    """Remove ``table`` if present; returns whether it was there."""
    if listing(table) is None:
        return False
    ok, _, err = _run(f"delete table {table}\n")
    if not ok:
        raise KernelError(f"nft could not delete table {table}: {err}")
    return True


_COUNTS = re.compile(r"packets \d+ bytes \d+")
# A dynamic set's elements (realtime copies' packets seen): traffic, not configuration.
_ELEMENTS = re.compile(r"\n\t*elements = \{[^}]*\}")


def listing(table: str = TABLE) -> str | None:
    """The table as the kernel holds it, in nft's words (None: not there), counters'
    values blanked: what a load is compared with afterwards to see drift."""
    ok, out, _ = _run(f"list table {table}\n")
    return _ELEMENTS.sub("", _COUNTS.sub("packets - bytes -", out)) if ok else None


def counters(table: str = TABLE) -> dict[str, int]:
    """Packets each named counter of ``table`` has counted (one listing)."""
    ok, out, _ = _run(f"list counters table {table}\n")
    if not ok:
        return {}
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r"counter (\S+) \{\s*packets (\d+)", out)}


def counter(table: str, name: str) -> int | None:
    """Packets a named counter of ``table`` has counted (None: no such counter)."""
    ok, out, _ = _run(f"list counter {table} {name}\n")
    found = re.search(r"packets (\d+)", out) if ok else None
    return int(found.group(1)) if found else None
