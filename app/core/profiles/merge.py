"""Imported gateways merged into a profile: which are added, which replace one, and
under which names. Pure (no I/O): `braid import` parses the files, calls
merge_gateways and saves what it returns; the rules are tested here on their own.

Naming, in this order:
1. A name given with ``--name`` is taken as it is: it replaces the profile's gateway
   of that name, if there is one (two files given one name is an error).
2. A file whose name (case aside) is the ``source`` of one of the profile's gateways
   replaces that gateway, whatever it is called: importing a provider's updated
   ``hk.conf`` again updates gateway hk. A gateway imported before Braid kept its source
   counts as coming from the file whose stem, lower-cased, is its name (as it was named).
3. Otherwise the name derived from the file (profiles/naming.py); if another gateway
   already has it (the profile's, or another file's in this import), the next free
   ``name-2``, ``name-3``: a different file never silently replaces a gateway.

A replaced gateway keeps its place, its cost (unless a cost is given) and its probe
address: a .conf knows neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.core.errors import BraidError
from app.core.profiles.model import Gateway, GatewaySecrets, Profile
from app.core.profiles.naming import legacy_gateway_name, unique_gateway_name
from app.core.profiles.rules import validate_profile


@dataclass(frozen=True)
class Incoming:
    """One parsed file. ``gateway.name`` is the one derived from its file, or the one
    given with --name (then ``named``); ``gateway.source`` is the file's name."""

    gateway: Gateway
    secrets: GatewaySecrets
    named: bool = False


@dataclass(frozen=True)
class Change:
    """What happened to one incoming gateway."""

    name: str  # its name in the profile
    source: str | None  # the file it came from
    replaced: bool  # it replaced a gateway of that name (else it was added)
    wanted: str | None = None  # the name its file gives, when another gateway had it
    wanted_by: str | None = None  # who had it: that gateway's file, or its name


@dataclass(frozen=True)
class Merged:
    profile: Profile  # validated (rules.validate_profile)
    changes: tuple[Change, ...]  # one per incoming gateway, in their order
    secrets: dict[str, GatewaySecrets]  # keys of the incoming gateways, by final name


def _same_file(gw: Gateway, source: str | None) -> bool:
    if source is None:
        return False
    if gw.source is not None:
        return gw.source.casefold() == source.casefold()
    return gw.name == legacy_gateway_name(source)


def _who(gw: Gateway) -> str:
    return gw.source or f"gateway {gw.name}"


def merge_gateways(existing: Profile | None, name: str, incoming: Sequence[Incoming], *,
                   cost: float | None = None, shared_exit: bool | None = None) -> Merged:
    """Profile ``name`` (``existing``, or a new one) with ``incoming`` added or replacing
    gateways (see the module docstring). ``cost``: the cost of every incoming gateway
    (default: a replaced gateway's, else 1). ``shared_exit``: set or clear the profile's
    (default: keep it; a new profile's is off). BraidError if the result is not a valid
    profile (rules.validate_profile), such as a shared exit whose gateways' addresses
    differ."""
    current = list(existing.gateways) if existing else []
    by_name = {gw.name: gw for gw in current}
    final: dict[int, str] = {}
    claimed: dict[str, Gateway] = {}  # final name -> the incoming gateway that has it

    for i, inc in enumerate(incoming):  # 1. names given with --name
        if not inc.named:
            continue
        gw_name = inc.gateway.name
        if gw_name in claimed:
            raise BraidError(f"{_who(claimed[gw_name])} and {_who(inc.gateway)} are both "
                             f"given the name {gw_name!r}", "give each file its own --name")
        final[i] = gw_name
        claimed[gw_name] = inc.gateway

    wanted: dict[int, tuple[str | None, str | None]] = {}
    for i, inc in enumerate(incoming):  # 2. files the profile already has
        if inc.named:
            continue
        matches = [gw for gw in current
                   if gw.name not in claimed and _same_file(gw, inc.gateway.source)]
        if matches:
            match = next((gw for gw in matches if gw.name == inc.gateway.name), matches[0])
            final[i] = match.name
            claimed[match.name] = inc.gateway

    for i, inc in enumerate(incoming):  # 3. new files: their own name, or the next free
        if i in final:
            continue
        base = inc.gateway.name
        later = {incoming[j].gateway.name for j in range(i + 1, len(incoming))
                 if j not in final and not incoming[j].named}
        holder = claimed.get(base) or by_name.get(base)
        gw_name = base if holder is None else unique_gateway_name(
            base, set(claimed) | set(by_name) | later)
        if holder is not None:
            wanted[i] = (base, _who(holder))
        final[i] = gw_name
        claimed[gw_name] = inc.gateway

    changes: list[Change] = []
    secrets: dict[str, GatewaySecrets] = {}
    for i, inc in enumerate(incoming):
        gw_name = final[i]
        new = replace(inc.gateway, name=gw_name, interface=f"br-{gw_name}")
        old = by_name.get(gw_name)
        if old is None:
            current.append(new if cost is None else replace(new, cost=cost))
        else:
            current[current.index(old)] = replace(
                new, cost=old.cost if cost is None else cost, probe=old.probe)
        wanted_name, wanted_by = wanted.get(i, (None, None))
        changes.append(Change(gw_name, inc.gateway.source, old is not None, wanted_name,
                              wanted_by))
        secrets[gw_name] = inc.secrets

    keep_shared = existing.shared_exit if existing else False
    profile = (replace(existing, gateways=tuple(current)) if existing
               else Profile(name=name, gateways=tuple(current)))
    profile = replace(profile, shared_exit=keep_shared if shared_exit is None else shared_exit)
    return Merged(validate_profile(profile), tuple(changes), secrets)
