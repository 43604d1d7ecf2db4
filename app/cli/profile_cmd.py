"""`braid import`, `braid profiles`, `braid profile show|delete`."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.core import present
from app.core.errors import BraidError
from app.core.plan import is_ip
from app.core.profiles.merge import Change, Incoming, merge_gateways
from app.core.profiles.model import Gateway, Profile
from app.core.profiles.rules import check_cost
from app.core.profiles.store import ProfileStore
from app.core.secrets import KeyringLockedError
from app.core.wgconf import parse_wg_quick


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this area's subcommands to ``sub``; each sets ``handler`` (args -> exit code)."""
    imp = sub.add_parser(
        "import", help="import wg-quick .conf files as gateways of a profile",
        description=textwrap.fill(
            "Read ordinary wg-quick .conf files, one gateway (one [Peer]) per file, into "
            "profile NAME (created if new). A folder means every *.conf in it, in name "
            "order. A gateway is named after its file, cleaned and shortened to fit "
            "(se-got-wg-001.conf -> se-got-wg001), unless --name says otherwise; a file "
            "imported again replaces the gateway it gave, and a different file whose name "
            "is taken gets name-2. Private and preshared keys go to the system keyring, "
            "the rest to the profile's TOML file. All files are checked first: on any "
            "error nothing is saved. Table, FwMark, SaveConfig and the Pre/Post Up/Down "
            "hooks are ignored with a warning. Rules: docs/profiles.md.", 78,
            break_on_hyphens=False),
        epilog=("examples:\n"
                "  braid import ~/Downloads/vpn --profile work\n"
                "  braid import wg0.conf wg1.conf --name hk --name tk --profile work\n"
                "  braid import hk.conf tk.conf --profile corp --shared-exit"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("paths", nargs="+", type=Path, metavar="FILE.conf|DIR",
                     help="wg-quick files, or folders of them")
    imp.add_argument("--profile", required=True, metavar="NAME",
                     help="profile to import into, created if new (lower case: 1-32 of "
                          "a-z 0-9 _ -)")
    imp.add_argument("--name", action="append", metavar="GATEWAY",
                     help="name a file's gateway yourself (1-12 of a-z 0-9 -, starting with "
                          "a letter); repeat it once per FILE, in the files' order (default: "
                          "from each file's name)")
    imp.add_argument("--cost", type=float, metavar="COST",
                     help="relative cost of these gateways, >= 0 (default: 1, or the "
                          "replaced gateway's cost)")
    imp.add_argument("--shared-exit", action=argparse.BooleanOptionalAction, default=None,
                     help="the gateways carry traffic to one shared exit (every file has the "
                          "same Address); --no-shared-exit: each has its own exit (default: "
                          "keep the profile's setting; a new profile's is off)")
    imp.set_defaults(handler=run_import)

    lst = sub.add_parser("profiles", help="list saved profiles",
                         description="List saved profiles and their gateways.")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(handler=run_list)

    prof = sub.add_parser("profile", help="show or delete a profile",
                          description="Show or delete one profile.")
    verbs = prof.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser("show", help="show a profile (keys are never printed)",
                            description="Show a profile's gateways and settings, and whether "
                                        "each has a preshared key. Keys stay in the keyring "
                                        "and are never printed; without a keyring the rest "
                                        "is still shown.")
    show.add_argument("name", metavar="NAME", help="the profile (see `braid profiles`)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)
    delete = verbs.add_parser("delete", help="delete a profile and its keys",
                              description="Delete a profile's file and its keys in the "
                                          "keyring, after asking on the terminal.")
    delete.add_argument("name", metavar="NAME", help="the profile (see `braid profiles`)")
    delete.add_argument("-y", "--yes", action="store_true",
                        help="do not ask (needed where there is no terminal to ask on)")
    delete.set_defaults(handler=run_delete)


def _warn(message: str) -> None:
    print(f"braid: warning: {message}", file=sys.stderr)


def _files(paths: list[Path]) -> list[Path]:
    """The files ``paths`` name: each file, and every *.conf of each folder (by name)."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        try:
            found = sorted((f for f in path.iterdir()
                            if f.suffix.lower() == ".conf" and f.is_file()),
                           key=lambda f: f.name)
        except OSError as exc:
            raise BraidError(f"cannot read the folder {path}: {exc.strerror or exc}",
                             "check the folder name and that you may read it") from None
        if not found:
            raise BraidError(f"the folder {path} has no .conf files",
                             "give the folder that holds your provider's .conf files, or "
                             "the files themselves")
        files += found
    seen: dict[Path, Path] = {}
    for f in files:
        key = f.resolve()
        if key in seen:
            raise BraidError(f"{f} is given twice (also as {seen[key]})",
                             "give each file once")
        seen[key] = f
    return files


def _parse_all(args: argparse.Namespace) -> list[Incoming]:
    """Parse and check every file before anything is saved."""
    names: list[str] = args.name or []
    if names:
        folders = [p for p in args.paths if p.is_dir()]
        if folders:
            raise BraidError(f"--name names files, but {folders[0]} is a folder",
                             "name the files themselves, or drop --name to name each "
                             "gateway after its file")
        if len(names) != len(args.paths):
            raise BraidError(f"{len(names)} --name for {len(args.paths)} files",
                             "give --name once per file, in the files' order, or drop it "
                             "to name each gateway after its file")
    if args.cost is not None:
        try:
            check_cost(args.cost)
        except ValueError as exc:
            raise BraidError(f"--cost {exc}", "give a cost >= 0") from None
    files = _files(args.paths)
    given: list[str | None] = list(names) if names else [None] * len(files)
    parsed = []
    for path, name in zip(files, given, strict=True):
        gateway, secrets = parse_wg_quick(path, name=name, warn=_warn)
        parsed.append(Incoming(gateway, secrets, named=name is not None))
    return parsed


def _change_line(change: Change, gw: Gateway) -> str:
    verb = "replaced" if change.replaced else "added"
    notes = [f"from {change.source}"] if change.source else []
    if change.wanted is not None:
        notes.append(f"the name {change.wanted} is taken by {change.wanted_by}")
    origin = f" ({'; '.join(notes)})" if notes else ""
    return f"  {verb} gateway {gw.name}{origin}: {gw.interface} -> {gw.peer.endpoint}"


def run_import(args: argparse.Namespace) -> int:
    store = ProfileStore()
    store.path(args.profile)  # a bad profile name fails before any file is read
    incoming = _parse_all(args)
    existing = store.load(args.profile) if store.exists(args.profile) else None
    merged = merge_gateways(existing, args.profile, incoming, cost=args.cost,
                            shared_exit=args.shared_exit)
    profile = merged.profile
    store.save(profile, merged.secrets)

    count = len(profile.gateways)
    shared = ", shared exit" if profile.shared_exit else ""
    print(f"{'updated' if existing else 'created'} profile {profile.name} "
          f"({count} gateway{'s' if count != 1 else ''}{shared})")
    for change in merged.changes:
        print(_change_line(change, profile.gateway(change.name)))
    return 0


def _summary(store: ProfileStore, name: str) -> dict[str, Any]:
    try:
        profile = store.load(name)
    except BraidError as exc:
        return {"name": name, "error": exc.what}
    return {"name": name, "lab": profile.lab,
            "gateways": [gw.name for gw in profile.gateways]}


def run_list(args: argparse.Namespace) -> int:
    store = ProfileStore()
    summaries = [_summary(store, name) for name in store.names()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print("no profiles yet; import one with: braid import FILE.conf --profile NAME",
              file=sys.stderr)
        return 0
    width = max(len(s["name"]) for s in summaries)
    for s in summaries:
        detail = (f"broken: {s['error']}" if "error" in s
                  else ", ".join(s["gateways"]) + (f"  (lab {s['lab']})" if s["lab"] else ""))
        print(f"{s['name']:<{width}}  {detail}")
    return 0


PROBE_DEFAULT = "default (first host of the tunnel network)"


def _preshared(store: ProfileStore, profile: Profile) -> tuple[dict[str, bool], str | None]:
    """Which gateways have a preshared key, or why that is unknown."""
    try:
        return store.has_preshared_keys(profile), None
    except KeyringLockedError:
        return {}, "unknown (keyring locked)"
    except BraidError:
        return {}, "unknown (no keyring)"


def _show_text(profile: Profile, psk: dict[str, bool], unknown: str | None) -> str:
    w = profile.weights
    lines = [f"profile {profile.name}" + (f"  (lab {profile.lab})" if profile.lab else ""),
             "shared exit: " + ("yes (one inner address on every tunnel)" if profile.shared_exit
                                else "no (each gateway has its own exit)"),
             f"weights: latency {w.latency:g}, loss {w.loss:g}, cost {w.cost:g}, "
             f"jitter {w.jitter:g}"]

    def opt(value: object, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    lines.append("dns while connected: " + _profile_dns(profile))
    for gw in profile.gateways:
        has_psk = unknown or ("yes (in the keyring)" if psk.get(gw.name) else "no")
        rows = [
            ("from file", opt(gw.source)),
            ("interface", gw.interface),
            ("addresses", ", ".join(gw.addresses)),
            ("dns", ", ".join(gw.dns) or "-"),
            ("mtu", opt(gw.mtu)),
            ("listen port", opt(gw.listen_port)),
            ("cost", f"{gw.cost:g}"),
            ("probe", gw.probe or PROBE_DEFAULT),
            ("peer key", gw.peer.public_key),
            ("endpoint", opt(gw.peer.endpoint)),
            ("allowed ips", ", ".join(gw.peer.allowed_ips)),
            ("keepalive", opt(gw.peer.persistent_keepalive, " s")),
            ("preshared", has_psk),
            ("keys", f"in the keyring (service braid, {profile.name}/{gw.name}/...)"),
        ]
        lines.append(f"gateway {gw.name}")
        lines += [f"  {label:<12} {value}" for label, value in rows]
    return "\n".join(lines)


def _profile_dns(profile: Profile) -> str:
    """What connecting applies, by plan.dns_state's rules: the full gateways' servers
    and domains for every name, a split gateway's for its own domains."""
    full = [g for g in profile.gateways if "0.0.0.0/0" in g.peer.allowed_ips]
    servers = [s for g in full for s in g.dns if is_ip(s)]
    domains = [d for g in full for d in g.dns if not is_ip(d)]
    split = [(g.name, [s for s in g.dns if is_ip(s)], [d for d in g.dns if not is_ip(d)])
             for g in profile.gateways if g not in full and any(is_ip(s) for s in g.dns)]
    return present.profile_dns_text(list(dict.fromkeys(servers)),
                                    list(dict.fromkeys(domains)), split)


def run_show(args: argparse.Namespace) -> int:
    store = ProfileStore()
    profile = store.load(args.name)
    psk, unknown = _preshared(store, profile)
    # A Profile holds no key at all, and the keyring is asked only whether a key exists,
    # so neither form can print one.
    if args.json:
        doc = asdict(profile)
        for gw in doc["gateways"]:
            gw["has_preshared_key"] = None if unknown else psk.get(gw["name"], False)
        print(json.dumps(doc, indent=2))
    else:
        print(_show_text(profile, psk, unknown))
    return 0


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run_delete(args: argparse.Namespace) -> int:
    store = ProfileStore()
    if not store.exists(args.name):
        raise store.missing(args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise BraidError(f"braid profile delete asks before it deletes profile "
                             f"{args.name}, and there is no terminal to ask on",
                             f"add --yes to delete it without asking: braid profile delete "
                             f"{args.name} --yes")
        try:
            gateways = [gw.name for gw in store.load(args.name).gateways]
            what = f" ({len(gateways)} gateway{'s' if len(gateways) != 1 else ''}: " \
                   f"{', '.join(gateways)})"
        except BraidError:
            what = " (broken)"
        if not _confirm(f"delete profile {args.name}{what} and its keys in the keyring?"):
            print(f"kept profile {args.name}", file=sys.stderr)
            return 1
    store.delete(args.name)
    print(f"deleted profile {args.name} and its keys")
    return 0
