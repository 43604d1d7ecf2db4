"""`braid run`, `braid pin`, `braid unpin`, `braid rules`, `braid apps`: traffic classes
by app from the command line (docs/classes.md). The work is app/core/classes.py's."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict
from typing import Any

from app.core import apps, classes
from app.core.apprules import RuleStore, check_class
from app.core.errors import BraidError
from app.core.netns import enter_netns
from app.core.targets import DEFAULT_LAB
from app.wire.classes import APP_CLASSES

CLASS_HELP = ("realtime (calls: the best path), bulk (transfers: off realtime's path), "
              "default, or bypass (outside the tunnels, on purpose)")
APP_HELP = "a program's path, a command on PATH, or a .desktop file"
MPTCP_HELP = ("bulk only: the program's TCP connections are MPTCP, one subflow through "
              "every healthy tunnel (a far end that does not speak MPTCP gets plain TCP "
              "on one path); braid run does it with mptcpize (Debian package mptcpize)")
PIN_MPTCP_HELP = ("bulk only: save the wish for MPTCP with the rule; a socket cannot become "
                  "MPTCP after it is made, so start the app with braid run --mptcp for it")
# mptcpize (Debian's mptcpize package) makes a program's TCP sockets MPTCP by LD_PRELOAD:
# Linux makes a socket MPTCP only when it is created with IPPROTO_MPTCP.
MPTCPIZE = "mptcpize"


def _lab_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--lab", nargs="?", const=DEFAULT_LAB, metavar="LAB",
                   help=f"{what} in the lab LAB (default {DEFAULT_LAB!r}): its client "
                        "namespace, through the lab's helper (needs root)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "run", help="start a program in a traffic class",
        description="Start CMD in class CLASS: every socket it (and what it starts) "
                    "opens carries that class's traffic. Needs a connection (braid up): "
                    "the class groups exist while one is. Put -- before CMD.")
    p.add_argument("--class", dest="cls", required=True, metavar="CLASS", help=CLASS_HELP)
    p.add_argument("--mptcp", action="store_true", help=MPTCP_HELP)
    _lab_arg(p, "run it")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                   help="the program and its arguments")
    p.set_defaults(handler=run_run)

    p = sub.add_parser(
        "pin", help="save a rule: this app is of that class (and move it now)",
        description="Save the rule \"APP is of CLASS\" (APP: a program's path, a command "
                    "on PATH or a .desktop file), give it to the helper, and move every "
                    "running process of that program of yours into the class at once. A "
                    "socket keeps the class it was opened in, so connections the app "
                    "already has stay where they are: restart it to move all of them.")
    p.add_argument("app", metavar="APP", help=APP_HELP)
    p.add_argument("--class", dest="cls", required=True, metavar="CLASS", help=CLASS_HELP)
    p.add_argument("--mptcp", action="store_true", help=PIN_MPTCP_HELP)
    _lab_arg(p, "move its running processes")
    p.set_defaults(handler=run_pin)

    p = sub.add_parser(
        "unpin", help="remove an app's rule (and take it out of its class now)",
        description="Remove the saved rule for APP and take its running processes out of "
                    "their class (back where they came from); their open sockets keep the "
                    "class they were opened in.")
    p.add_argument("app", metavar="APP", help=APP_HELP)
    _lab_arg(p, "move its running processes")
    p.set_defaults(handler=run_unpin)

    p = sub.add_parser("rules", help="the saved app rules",
                       description="The saved rules \"this app is of that class\" "
                                   "(<config>/rules.toml).")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_rules)

    p = sub.add_parser("apps", help="the apps with network activity now, and their class",
                       description="Apps with open TCP/UDP sockets now (yours; root sees "
                                   "everyone's), busiest first, each with its class (the "
                                   "Braid group its processes are in).")
    p.add_argument("--json", action="store_true", help="print JSON")
    _lab_arg(p, "list them")
    p.set_defaults(handler=run_apps)


def _mptcp(cls: str, mptcp: bool) -> None:
    if mptcp and cls != "bulk":
        raise BraidError("--mptcp is for the bulk class", "use --class bulk, or drop --mptcp")


def _mptcpize() -> str:
    found = shutil.which(MPTCPIZE)
    if found is None:
        raise BraidError("--mptcp needs mptcpize, which is not installed",
                         "install it (Debian, Ubuntu: apt-get install mptcpize), or drop "
                         "--mptcp")
    return found


def run_run(args: argparse.Namespace) -> int:
    check_class(args.cls)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise BraidError("no program to run", "say it after --: braid run --class bulk -- "
                                              "rsync ...")
    program = shutil.which(command[0])
    if program is None:
        raise BraidError(f"no program {command[0]!r} found",
                         "give its path, or a command on PATH")
    _mptcp(args.cls, args.mptcp)
    argv = [command[0], *command[1:]]
    if args.mptcp:
        # mptcpize execs the program with its wrapper preloaded: it too starts in the
        # class, so the program's first socket is already there and already MPTCP.
        program, argv = _mptcpize(), [MPTCPIZE, "run", program, *command[1:]]
    place = classes.where(args.lab)
    if place.netns is not None:
        enter_netns(place.netns)
    # This very process goes into the class, then becomes the program: its first
    # socket is already in the class.
    classes.move(place.helper_socket, [os.getpid()], args.cls)
    try:
        os.execv(program, argv)
    except OSError as exc:
        raise BraidError(f"cannot start {program}: {exc.strerror}",
                         "check that it is a program you may run") from None


def _said(p: classes.Pinned, cls: str | None) -> None:
    for line in classes.said(p, cls):
        print(f"braid: {line}")


def run_pin(args: argparse.Namespace) -> int:
    check_class(args.cls)
    _mptcp(args.cls, args.mptcp)
    p = classes.pin(args.app, args.cls, mptcp=args.mptcp, lab=args.lab)
    assert p.rule is not None
    was = f" (was {p.replaced.cls})" if p.replaced and p.replaced.cls != p.rule.cls else ""
    print(f"braid: pinned {p.rule.exe} as {p.rule.cls}{was}")
    if p.rule.mptcp:
        print("braid: MPTCP recorded: its connections are MPTCP when it is started with "
              f"braid run --class bulk --mptcp -- {p.rule.exe}")
    _said(p, args.cls)
    return 0


def run_unpin(args: argparse.Namespace) -> int:
    p = classes.unpin(args.app, lab=args.lab)
    assert p.replaced is not None
    print(f"braid: unpinned {p.replaced.exe} (was {p.replaced.cls})")
    _said(p, None)
    return 0


def run_rules(args: argparse.Namespace) -> int:
    store = RuleStore()
    rules = store.load()
    if args.json:
        print(json.dumps(classes.rules_doc(rules), indent=1))
        return 0
    if not rules:
        print(f"no saved rules ({store.path}); add one with `braid pin APP --class CLASS`")
        return 0
    width = max(len(r.exe) for r in rules)
    for r in rules:
        print(f"{r.exe:<{width}}  {r.cls}{'  (mptcp)' if r.mptcp else ''}")
    return 0


def run_apps(args: argparse.Namespace) -> int:
    if args.lab is not None:
        enter_netns(classes.where(args.lab).netns or "")
    found = apps.list_apps()
    if args.json:
        print(json.dumps([asdict(a) for a in found], indent=1))
        return 0
    if not found:
        print("no app has a TCP or UDP socket open now")
        return 0
    width = max(len(a.name) for a in found)
    print(f"{'APP':<{width}}  {'CLASS':<8}  SOCKETS  PIDS  EXE")
    for a in found:
        cls = a.cls if a.cls in APP_CLASSES else "-"
        print(f"{a.name:<{width}}  {cls:<8}  {a.sockets:>7}  {','.join(map(str, a.pids))}  "
              f"{a.exe}")
    return 0
