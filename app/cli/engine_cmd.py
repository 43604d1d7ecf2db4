"""`braid up`, `braid down`, `braid status`: the engine without the tray app.

Only argument handling and printing: running the engine is app/core/service.py, the
background start app/core/daemon.py, finding a running engine app/core/runtime.py and
control.py, the words app/core/present.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from app.core import present, runtime
from app.core.control import ControlClient, EngineInfo
from app.core.daemon import spawn_and_wait
from app.core.decide import DecideConfig
from app.core.engine import EngineConfig
from app.core.errors import BraidError
from app.core.helper_client import DEFAULT_SOCKET_PATH, SyncHelperClient
from app.core.model import ConnState, EngineSnapshot
from app.core.profiles.store import ProfileStore
from app.core.service import EngineService, idle_snapshot, prepare
from app.core.targets import DEFAULT_LAB, ConnectTarget, placement

UP_TIMEOUT_S = 30.0
DOWN_TIMEOUT_S = 20.0


def _target_args(p: argparse.ArgumentParser, verb: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--profile", metavar="NAME",
                   help=f"{verb} the saved profile NAME (see `braid profiles`)")
    g.add_argument("--lab", nargs="?", const=DEFAULT_LAB, metavar="LAB",
                   help=f"{verb} the lab LAB (default {DEFAULT_LAB!r}): its engine runs "
                        "inside the lab's client namespace, through the lab's helper")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this area's subcommands to ``sub``; each sets ``handler`` (args -> exit code)."""
    up = sub.add_parser(
        "up", help="connect: bring the profile's tunnels up and steer traffic",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Bring every gateway of a profile up at once through braid-helper, probe each "
            "path, and steer each class of traffic onto the best one (failover when a path "
            "dies, hysteresis so a noisy one never causes flapping). Runs in the background "
            "by default (see `braid status`, `braid down`); --foreground stays and shows "
            "the live path table. Without --profile or --lab: the only saved profile. One "
            "engine runs per helper: if one is up already, this says so and by whom."),
    )
    _target_args(up, "connect to")
    up.add_argument("--foreground", action="store_true",
                    help="stay in the foreground (live table on a terminal, events otherwise)")
    tuning = "; default: each class's from the profile (docs/engine.md, Decisions)"
    up.add_argument("--hold-down", type=float, metavar="SECONDS",
                    help="for every class: quiet time after a switch, and up-time before a "
                         "path that came back may take traffic" + tuning)
    up.add_argument("--dwell", type=float, metavar="SECONDS",
                    help="for every class: how long a better path must lead by the margin "
                         "before traffic moves" + tuning)
    up.add_argument("--margin", type=float, metavar="POINTS",
                    help="for every class: score points (0..1) a better path must lead by"
                         + tuning)
    up.add_argument("--persistent", action="store_true",
                    help="always on: if this engine stops without a disconnect (a crash, "
                         "a kill, a logout), the helper keeps the tunnels up and the kill "
                         "switch on instead of removing them after its grace period; the "
                         "profile's always_on setting does the same")
    up.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(handler=run_up)

    down = sub.add_parser("down", help="disconnect (take the tunnels down)",
                          description="Disconnect: stop the running engine (started by "
                                      "`braid up` or the tray app); its tunnels, routes, "
                                      "rules and nft tables go with it. With no engine "
                                      "running, also removes what the helper still holds "
                                      "for a client that left. Without --profile or --lab: "
                                      "the only engine running.")
    _target_args(down, "disconnect")
    down.set_defaults(handler=run_down)

    st = sub.add_parser("status", help="show paths, scores, classes and recent events",
                        description="Per path: state, RTT, jitter, loss, score, the classes "
                                    "it carries and why its score is what it is; then the "
                                    "recent events (with their reasons, detection and "
                                    "switch times). Shows the running engine, whoever "
                                    "started it. Without --profile or --lab: the only "
                                    "engine running.")
    _target_args(st, "show")
    st.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    st.add_argument("--watch", action="store_true", help="keep refreshing until Ctrl-C")
    st.set_defaults(handler=run_status)


# -- targets ------------------------------------------------------------------------


def resolve_target(args: argparse.Namespace) -> ConnectTarget:
    if args.lab is not None:
        target = ConnectTarget.for_lab(args.lab)
        if not ProfileStore().exists(target.profile):
            raise BraidError(f"lab {args.lab!r} is not up (it has no profile "
                             f"{target.profile})",
                             f"build it first: braid lab up --name {args.lab}; then "
                             f"braid up --lab {args.lab}")
        return target
    store = ProfileStore()
    if args.profile is not None:
        return ConnectTarget(args.profile, store.load(args.profile).lab)
    names = store.names()
    if len(names) == 1:
        return ConnectTarget(names[0], store.load(names[0]).lab)
    raise BraidError("which profile? " + (f"saved: {', '.join(names)}" if names else
                                           "there is none yet"),
                     "say --profile NAME or --lab [LAB] (import with `braid import`, or "
                     "start a lab with `braid lab up`)")


def _running() -> list[tuple[runtime.RunFiles, EngineInfo]]:
    root = runtime.runtime_root()
    out = []
    for key in runtime.known_keys(root):
        files = runtime.RunFiles(key, root)
        try:
            out.append((files, ControlClient(files.socket_path, timeout=2.0).hello()))
        except BraidError:
            continue
    return out


def running_target(args: argparse.Namespace) -> tuple[runtime.RunFiles, EngineInfo] | None:
    """The running engine the arguments name (or the only one); None if none runs."""
    live = _running()
    if args.lab is not None:
        return next(((f, i) for f, i in live if i.lab == args.lab), None)
    if args.profile is not None:
        return next(((f, i) for f, i in live if i.profile == args.profile), None)
    if len(live) > 1:
        raise BraidError("several engines are up: " + ", ".join(i.profile for _, i in live),
                         "say which one with --profile NAME or --lab LAB")
    return live[0] if live else None


def _already(info: EngineInfo) -> BraidError:
    return BraidError(f"braid is already up for {info.profile} (pid {info.pid}, started by "
                      f"{info.runner})", "see `braid status`; `braid down` first to restart it")


# -- up -----------------------------------------------------------------------------


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The profile's per-class tuning, unless the command line sets one for all."""
    given = {k: v for k, v in (("margin", args.margin), ("dwell_s", args.dwell),
                               ("hold_down_s", args.hold_down)) if v is not None}
    persistent = bool(getattr(args, "persistent", False))
    if not given:
        return EngineConfig(persistent=persistent)
    try:
        decide = DecideConfig(**given)
    except ValueError as exc:
        raise BraidError(f"bad tuning option: {exc}", "see `braid up --help`") from None
    return EngineConfig(decide=decide, persistent=persistent)


def run_up(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    config = engine_config(args)
    files = runtime.files_for(target)
    if not args.detached:
        try:
            raise _already(ControlClient(files.socket_path, timeout=2.0).hello())
        except BraidError as exc:
            if "already up" in exc.what:
                raise
    if args.foreground or args.detached:
        return _run_foreground(target, config, live=not args.detached)
    prepare(target, ProfileStore(), DEFAULT_SOCKET_PATH)  # bad target: say so here, start nothing
    snap = spawn_and_wait(_child_argv(args, target), files, UP_TIMEOUT_S)
    if snap.state in (ConnState.ERROR, ConnState.DISCONNECTED):
        why = snap.error or f"it did not connect; see {files.log_path}"
        print(f"braid: could not connect {target.label}: {why}", file=sys.stderr)
        return 2
    print(f"braid: up for {target.label} in the background (pid {snap.pid}); "
          "`braid status` shows it, `braid down` stops it")
    print(present.status_text(snap, events=3))
    return 0


def _child_argv(args: argparse.Namespace, target: ConnectTarget) -> list[str]:
    argv = [sys.executable, "-m", "app.cli.main",
             *(["-v"] if getattr(args, "verbose", False) else []), "up", "--detached"]
    argv += ["--lab", target.lab] if target.lab else ["--profile", target.profile]
    for flag, value in (("--hold-down", args.hold_down), ("--dwell", args.dwell),
                        ("--margin", args.margin)):
        if value is not None:
            argv += [flag, str(value)]
    if args.persistent:
        argv.append("--persistent")
    return argv


def _run_foreground(target: ConnectTarget, config: EngineConfig, *, live: bool) -> int:
    stop = threading.Event()
    last: list[EngineSnapshot] = []

    def on_snapshot(snap: EngineSnapshot) -> None:
        last[:] = [snap]
        if snap.state is ConnState.DISCONNECTED or (snap.state is ConnState.ERROR
                                                    and not snap.paths):
            stop.set()  # the engine ended (an error before anything was in the kernel)

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    service = EngineService(on_snapshot, config=config, runner="braid up")
    tty = live and sys.stdout.isatty()
    printed = 0

    def show() -> None:
        nonlocal printed
        if not last or not live:
            return
        snap = last[0]
        if tty:
            sys.stdout.write("\x1b[H\x1b[J" + present.status_text(snap) + "\n")
            sys.stdout.flush()
            return
        for e in snap.events:
            if e.seq > printed:
                print(present.event_line(e), flush=True)
                printed = e.seq

    try:
        service.connect(target)
        while not stop.wait(0.5 if tty else 0.2):
            show()
    finally:
        # A signal ends the wait early: what happened since the last turn (and what the
        # disconnect itself says) is shown before leaving, or a log piped from here would
        # miss the newest events.
        show()
        service.shutdown()
        show()
    final = last[0] if last else idle_snapshot(ConnState.DISCONNECTED, target.profile)
    if final.state is ConnState.ERROR:
        print(f"braid: error: {final.error}", file=sys.stderr)
        return 2
    return 0


# -- down ---------------------------------------------------------------------------


def _helper_for(args: argparse.Namespace) -> SyncHelperClient | None:
    """The helper a disconnect with no engine should clean up, if it can be named."""
    try:
        if args.lab is not None:
            target = ConnectTarget.for_lab(args.lab)
            where = placement(target, ProfileStore().load(target.profile))
            return SyncHelperClient(where.helper_socket)
        return SyncHelperClient(DEFAULT_SOCKET_PATH)
    except BraidError:
        return None


def run_down(args: argparse.Namespace) -> int:
    found = running_target(args)
    if found is None:
        return _down_without_engine(args)
    files, info = found
    ControlClient(files.socket_path).disconnect()
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while runtime.locked(files) and time.monotonic() < deadline:
        time.sleep(0.05)
    if runtime.locked(files):
        # It answered but did not stop: the pid came from its own socket (SO_PEERCRED is
        # the kernel's word on who serves it), so this signals our engine and no other.
        os.kill(info.pid, signal.SIGTERM)
        raise BraidError(f"the engine for {info.profile} (pid {info.pid}) did not stop in "
                         f"{DOWN_TIMEOUT_S:g} s; sent it SIGTERM",
                         "see `braid status`; the helper removes its tunnels after its grace "
                         "period if it dies")
    print(f"braid: down ({info.profile})")
    return 0


def _down_without_engine(args: argparse.Namespace) -> int:
    """No engine: remove what the helper still holds for a client that left (its grace
    period, a persistent state, or its kill switch), so disconnect always unblocks."""
    what = (f"lab {args.lab}" if args.lab is not None else
            f"profile {args.profile}" if args.profile is not None else "anything")
    helper = _helper_for(args)
    if helper is not None:
        with helper:
            try:
                status = helper.status()
            except BraidError:
                status = None
            if status is not None and not status.owner_connected and (
                    status.tunnels or status.rules or status.marking
                    or status.guard is not None):
                helper.down()
                print("braid: no engine was running; removed what the helper still held "
                      "(tunnels or the kill switch) for a client that left")
                return 0
    print(f"braid: not up for {what}; nothing to do")
    return 0


# -- status -------------------------------------------------------------------------


def _status_once(args: argparse.Namespace) -> EngineSnapshot:
    found = running_target(args)
    if found is not None:
        try:
            return ControlClient(found[0].socket_path).snapshot()
        except BraidError:
            pass
    return idle_snapshot(ConnState.DISCONNECTED, args.profile,
                         lab=getattr(args, "lab", None))


def _print(snap: EngineSnapshot, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(snap.to_json(), indent=None if args.watch else 1), flush=True)
        return
    if args.watch and sys.stdout.isatty():
        sys.stdout.write("\x1b[H\x1b[J")
    print(present.status_text(snap), flush=True)


def run_status(args: argparse.Namespace) -> int:
    try:
        if not args.watch:
            _print(_status_once(args), args)
            return 0
        while True:
            found = running_target(args)
            if found is None:
                _print(_status_once(args), args)
                time.sleep(0.5)
                continue
            shown = 0.0
            for snap in ControlClient(found[0].socket_path).watch():
                if time.monotonic() - shown >= 0.5:
                    _print(snap, args)
                    shown = time.monotonic()
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
