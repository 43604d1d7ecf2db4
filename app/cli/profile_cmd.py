"""`braid import`, `braid profiles`, `braid profile show|delete`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from app.core.errors import BraidError
from app.core.profiles.model import Gateway, GatewaySecrets, Profile
from app.core.profiles.rules import check_cost
from app.core.profiles.store import ProfileStore
from app.core.wgconf import parse_wg_quick


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this area's subcommands to ``sub``; each sets ``handler`` (args -> exit code)."""
    imp = sub.add_parser(
        "import", help="import wg-quick .conf files as gateways of a profile",
        description=(
            "Read ordinary wg-quick .conf files, one gateway (one [Peer]) per file, into "
            "profile NAME (created if new). A gateway is named after its file (hk.conf -> "
            "hk) unless --name says otherwise; importing a gateway the profile already has "
            "replaces it. Private and preshared keys go to the system keyring, the rest to "
            "the profile's TOML file. All files are checked first: on any error nothing is "
            "saved. Table, FwMark, SaveConfig and the Pre/Post Up/Down hooks are ignored "
            "with a warning."),
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE.conf")
    imp.add_argument("--profile", required=True, metavar="NAME", help="profile to import into")
    imp.add_argument("--name", metavar="GW", help="gateway name (only with a single file)")
    imp.add_argument("--cost", type=float, metavar="C",
                     help="relative cost of these gateways, >= 0 (default 1, or the "
                          "replaced gateway's cost)")
    imp.set_defaults(handler=run_import)

    lst = sub.add_parser("profiles", help="list saved profiles",
                         description="List saved profiles and their gateways.")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(handler=run_list)

    prof = sub.add_parser("profile", help="show or delete a profile",
                          description="Show or delete one profile.")
    verbs = prof.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser("show", help="show a profile (keys are never printed)",
                            description="Show a profile's gateways and settings. Keys stay "
                                        "in the keyring and are never printed.")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)
    delete = verbs.add_parser("delete", help="delete a profile and its keys",
                              description="Delete a profile's file and its keys in the keyring.")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(handler=run_delete)


def _warn(message: str) -> None:
    print(f"braid: warning: {message}", file=sys.stderr)


def _parse_all(args: argparse.Namespace) -> list[tuple[Path, Gateway, GatewaySecrets]]:
    """Parse and check every file before anything is saved."""
    if args.name is not None and len(args.files) > 1:
        raise BraidError("--name names one gateway, but several files were given",
                         "import the files one by one, or drop --name to name each "
                         "gateway after its file")
    if args.cost is not None:
        try:
            check_cost(args.cost)
        except ValueError as exc:
            raise BraidError(f"--cost {exc}", "give a cost >= 0") from None
    parsed = []
    seen: dict[str, Path] = {}
    for path in args.files:
        gateway, secrets = parse_wg_quick(path, name=args.name, warn=_warn)
        if gateway.name in seen:
            raise BraidError(f"{seen[gateway.name]} and {path} both give gateway "
                             f"{gateway.name!r}", "rename one file, or import them one by "
                                                  "one with --name")
        seen[gateway.name] = path
        parsed.append((path, gateway, secrets))
    return parsed


def run_import(args: argparse.Namespace) -> int:
    store = ProfileStore()
    store.path(args.profile)  # a bad profile name fails before any file is read
    parsed = _parse_all(args)
    existing = store.load(args.profile) if store.exists(args.profile) else None
    gateways = list(existing.gateways) if existing else []
    added, replaced = [], []
    for _, gateway, _ in parsed:
        index = next((i for i, gw in enumerate(gateways) if gw.name == gateway.name), None)
        if index is None:
            gateways.append(gateway if args.cost is None else replace(gateway, cost=args.cost))
            added.append(gateway.name)
        else:
            # A .conf knows neither cost nor probe address: keep what the profile had.
            cost = gateways[index].cost if args.cost is None else args.cost
            gateways[index] = replace(gateway, cost=cost, probe=gateways[index].probe)
            replaced.append(gateway.name)
    profile = (replace(existing, gateways=tuple(gateways)) if existing
               else Profile(name=args.profile, gateways=tuple(gateways)))
    store.save(profile, {gw.name: secrets for _, gw, secrets in parsed})

    print(f"{'updated' if existing else 'created'} profile {profile.name} "
          f"({len(profile.gateways)} gateway{'s' if len(profile.gateways) != 1 else ''})")
    for path, gw, _ in parsed:
        verb = "added" if gw.name in added else "replaced"
        print(f"  {verb} gateway {gw.name} from {path}: {gw.interface} -> {gw.peer.endpoint}")
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


def _show_text(profile: Profile) -> str:
    w = profile.weights
    lines = [f"profile {profile.name}" + (f"  (lab {profile.lab})" if profile.lab else ""),
             f"weights: latency {w.latency:g}, loss {w.loss:g}, cost {w.cost:g}, "
             f"jitter {w.jitter:g}"]

    def opt(value: object, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    for gw in profile.gateways:
        rows = [
            ("interface", gw.interface),
            ("addresses", ", ".join(gw.addresses)),
            ("dns", ", ".join(gw.dns) or "-"),
            ("mtu", opt(gw.mtu)),
            ("listen port", opt(gw.listen_port)),
            ("cost", f"{gw.cost:g}"),
            ("peer key", gw.peer.public_key),
            ("endpoint", opt(gw.peer.endpoint)),
            ("allowed ips", ", ".join(gw.peer.allowed_ips)),
            ("keepalive", opt(gw.peer.persistent_keepalive, " s")),
            ("keys", f"in the keyring (service braid, {profile.name}/{gw.name}/...)"),
        ]
        lines.append(f"gateway {gw.name}")
        lines += [f"  {label:<12} {value}" for label, value in rows]
    return "\n".join(lines)


def run_show(args: argparse.Namespace) -> int:
    profile = ProfileStore().load(args.name)
    # A Profile holds no key at all, so neither form can print one.
    print(json.dumps(asdict(profile), indent=2) if args.json else _show_text(profile))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    ProfileStore().delete(args.name)
    print(f"deleted profile {args.name} and its keys")
    return 0
