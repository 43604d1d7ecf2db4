"""`braid up`, `braid down`, `braid status`: run the engine without the tray app."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from app.core import runtime
from app.core.decide import DecideConfig
from app.core.engine import EngineConfig
from app.core.errors import BraidError
from app.core.helper_client import DEFAULT_SOCKET_PATH
from app.core.model import ConnState, EngineSnapshot
from app.core.profiles.store import ProfileStore
from app.core.service import EngineService, prepare
from app.core.targets import ConnectTarget

DEFAULT_LAB = "lab"
UP_TIMEOUT_S = 30.0
DOWN_TIMEOUT_S = 20.0
STATUS_WRITE_S = 0.2
SETTLED = {ConnState.CONNECTED.value, ConnState.DEGRADED.value, ConnState.ERROR.value,
           ConnState.DISCONNECTED.value}


def _target_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--profile", metavar="P", help="a saved profile (see `braid profiles`)")
    g.add_argument("--lab", nargs="?", const=DEFAULT_LAB, metavar="LAB",
                   help=f"a running lab (default name {DEFAULT_LAB!r}): connect from inside "
                        "its client namespace through its helper")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this area's subcommands to ``sub``; each sets ``handler`` (args -> exit code)."""
    up = sub.add_parser(
        "up", help="connect: bring the profile's tunnels up and steer traffic",
        description=(
            "Bring every gateway of a profile up at once through braid-helper, probe each "
            "path, and steer each class of traffic onto the best one (failover when a path "
            "dies, hysteresis so a noisy one never causes flapping). Runs in the background "
            "by default (see `braid status`, `braid down`); --foreground stays and shows "
            "the live path table. Without --profile or --lab: the only saved profile."),
    )
    _target_args(up)
    up.add_argument("--foreground", action="store_true",
                    help="stay in the foreground (live table on a terminal, events otherwise)")
    up.add_argument("--hold-down", type=float, metavar="S",
                    help=f"seconds of quiet after a switch, and of up-time before a path that "
                         f"came back may take traffic (default {DecideConfig.hold_down_s:g})")
    up.add_argument("--dwell", type=float, metavar="S",
                    help=f"seconds a better path must lead by the margin before traffic moves "
                         f"(default {DecideConfig.dwell_s:g})")
    up.add_argument("--margin", type=float, metavar="M",
                    help=f"score points (0..1) a better path must lead by "
                         f"(default {DecideConfig.margin:g})")
    up.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(handler=run_up)

    down = sub.add_parser("down", help="disconnect (take the tunnels down)",
                          description="Stop the engine started by `braid up`; its tunnels, "
                                      "routes, rules and nft table go with it. Without "
                                      "--profile or --lab: the only one running.")
    _target_args(down)
    down.set_defaults(handler=run_down)

    st = sub.add_parser("status", help="show paths, scores, classes and recent events",
                        description="Per path: RTT, jitter, loss, score, up/down, the classes "
                                    "it carries; then the recent events (switches with reason, "
                                    "metrics, detection and switch times).")
    _target_args(st)
    st.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    st.add_argument("--watch", action="store_true", help="keep refreshing until Ctrl-C")
    st.set_defaults(handler=run_status)


# -- targets ------------------------------------------------------------------------


def resolve_target(args: argparse.Namespace) -> ConnectTarget:
    if args.lab is not None:
        return ConnectTarget.for_lab(args.lab)
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


def running_target(args: argparse.Namespace) -> tuple[runtime.RunFiles, int] | None:
    """The running engine the arguments name (or the only one); None if none runs."""
    live = runtime.running()
    if args.lab is not None or args.profile is not None:
        key = f"lab-{args.lab}" if args.lab is not None else args.profile
        return next(((f, pid) for f, pid in live if f.key == key), None)
    if len(live) > 1:
        raise BraidError("several engines are up: " + ", ".join(f.key for f, _ in live),
                         "say which one with --profile NAME or --lab LAB")
    return live[0] if live else None


# -- up -----------------------------------------------------------------------------


def engine_config(args: argparse.Namespace) -> EngineConfig:
    base = DecideConfig()
    try:
        decide = DecideConfig(
            margin=base.margin if args.margin is None else args.margin,
            dwell_s=base.dwell_s if args.dwell is None else args.dwell,
            hold_down_s=base.hold_down_s if args.hold_down is None else args.hold_down,
        )
    except ValueError as exc:
        raise BraidError(f"bad tuning option: {exc}", "see `braid up --help`") from None
    return EngineConfig(decide=decide)


def run_up(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    config = engine_config(args)
    files = runtime.files_for(target.profile)
    pid = runtime.read_pid(files)
    if pid is not None:
        raise BraidError(f"braid is already up for {target.label} (pid {pid})",
                         "see `braid status`; `braid down` first to restart it")
    if args.foreground or args.detached:
        return _run_foreground(target, config, files, live=not args.detached)
    prepare(target, ProfileStore(), DEFAULT_SOCKET_PATH)  # bad target: say so here, start nothing
    return _spawn_background(args, target, files)


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "app.cli.main", "up", "--detached"]
    if args.lab is not None:
        argv += ["--lab", args.lab]
    elif args.profile is not None:
        argv += ["--profile", args.profile]
    for flag, value in (("--hold-down", args.hold_down), ("--dwell", args.dwell),
                        ("--margin", args.margin)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _spawn_background(args: argparse.Namespace, target: ConnectTarget,
                      files: runtime.RunFiles) -> int:
    argv = _child_argv(args)
    if args.lab is None and args.profile is None:
        argv += ["--profile", target.profile]
    files.root.mkdir(parents=True, exist_ok=True)
    files.status_path.unlink(missing_ok=True)
    with open(files.log_path, "ab") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, cwd=os.getcwd())
    deadline = time.monotonic() + UP_TIMEOUT_S
    doc = None
    while time.monotonic() < deadline:
        doc = runtime.read_status(files)
        if doc is not None and doc.get("state") in SETTLED:
            break
        if child.poll() is not None:
            doc = runtime.read_status(files)
            break
        time.sleep(0.05)
    if doc is None or doc.get("state") in (ConnState.ERROR.value, ConnState.DISCONNECTED.value):
        if child.poll() is None:
            child.terminate()
        why = (doc or {}).get("error") or f"it did not connect; see {files.log_path}"
        files.status_path.unlink(missing_ok=True)
        print(f"braid: could not connect {target.label}: {why}", file=sys.stderr)
        return 2
    print(f"braid: up for {target.label} in the background (pid {child.pid}); "
          "`braid status` shows it, `braid down` stops it")
    print(render(doc, events=3))
    return 0


def _run_foreground(target: ConnectTarget, config: EngineConfig, files: runtime.RunFiles,
                    *, live: bool) -> int:
    runtime.claim(files)
    stop = threading.Event()
    last: dict[str, Any] = {}
    written = [0.0, -1]

    def on_snapshot(snap: EngineSnapshot) -> None:
        doc = status_doc(snap, target)
        last["doc"] = doc
        now = time.monotonic()
        key = len(snap.events) * 16 + list(ConnState).index(snap.state)
        if now - written[0] >= STATUS_WRITE_S or key != written[1] or \
                snap.state in (ConnState.ERROR, ConnState.DISCONNECTED):
            runtime.write_status(files, doc)
            written[0], written[1] = now, key
        if snap.state in (ConnState.ERROR, ConnState.DISCONNECTED):
            stop.set()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    service = EngineService(on_snapshot, config=config)
    tty = live and sys.stdout.isatty()
    printed_until = 0.0
    try:
        service.connect(target)
        while not stop.wait(0.5 if tty else 0.2):
            doc = last.get("doc")
            if doc is None or not live:
                continue
            if tty:
                sys.stdout.write("\x1b[H\x1b[J" + render(doc) + "\n")
                sys.stdout.flush()
            else:
                for e in doc["events"]:
                    if e["t"] > printed_until:
                        print(render_event(e), flush=True)
                        printed_until = e["t"]
    finally:
        service.shutdown()
        runtime.release(files)
        final = last.get("doc") or {}
        # An error stays for the `braid up` that started us to read (it removes it).
        if final.get("state") != ConnState.ERROR.value:
            files.status_path.unlink(missing_ok=True)
    doc = last.get("doc") or {}
    if doc.get("state") == ConnState.ERROR.value:
        print(f"braid: error: {doc.get('error')}", file=sys.stderr)
        return 2
    return 0


def status_doc(snap: EngineSnapshot, target: ConnectTarget) -> dict[str, Any]:
    doc = snap.to_json()
    doc["pid"] = os.getpid()
    doc["lab"] = target.lab
    return doc


# -- down ---------------------------------------------------------------------------


def run_down(args: argparse.Namespace) -> int:
    found = running_target(args)
    if found is None:
        what = (f"lab {args.lab}" if args.lab is not None else
                f"profile {args.profile}" if args.profile is not None else "anything")
        print(f"braid: not up for {what}; nothing to do")
        return 0
    files, pid = found
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while runtime.read_pid(files) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    if runtime.read_pid(files) == pid:
        raise BraidError(f"the engine for {files.key} (pid {pid}) did not stop in "
                         f"{DOWN_TIMEOUT_S:g} s", f"kill it: kill -9 {pid}; the helper removes "
                         "its tunnels after its grace period")
    print(f"braid: down ({files.key})")
    return 0


# -- status -------------------------------------------------------------------------


def _status_once(args: argparse.Namespace) -> dict[str, Any]:
    found = running_target(args)
    doc = runtime.read_status(found[0]) if found else None
    if doc is None:
        return {"state": ConnState.DISCONNECTED.value, "profile": args.profile, "paths": [],
                "classes": {}, "events": [], "error": None}
    return doc


def run_status(args: argparse.Namespace) -> int:
    try:
        while True:
            doc = _status_once(args)
            if args.json:
                print(json.dumps(doc, indent=None if args.watch else 1), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[J")
                print(render(doc), flush=True)
            if not args.watch:
                return 0
            time.sleep(0.5)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


# -- rendering ----------------------------------------------------------------------


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def render_event(e: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(e["t"]))
    head = f"{when} {e['kind']}"
    if e.get("cls"):
        head += f" {e['cls']}"
    if e.get("from_path") or e.get("to_path"):
        head += f" {e.get('from_path') or '-'} -> {e.get('to_path') or '-'}"
    times = []
    if e.get("detection_ms") is not None:
        times.append(f"detected in {e['detection_ms']:.0f} ms")
    if e.get("switch_ms") is not None:
        times.append(f"switched in {e['switch_ms']:.1f} ms")
    tail = f" ({', '.join(times)})" if times else ""
    return f"{head}: {e['reason']}{tail}"


def render(doc: dict[str, Any], events: int = 8) -> str:
    # A class with no path is closed once connected; while connecting it is still
    # waiting for its first measurements (its traffic is held meanwhile, not leaked).
    none = "waiting" if doc["state"] == ConnState.CONNECTING.value else "CLOSED"
    classes = ", ".join(f"{c} -> {'/'.join(p) or none}" for c, p in doc["classes"].items())
    who = f" {doc['profile']}" if doc.get("profile") else ""
    lines = [f"braid{who}: {doc['state']}"
             + (f" ({classes})" if classes else "")]
    if doc.get("error"):
        lines.append(f"error: {doc['error']}")
    rows: list[Sequence[str]] = [("PATH", "STATE", "RTT", "P95", "JITTER", "LOSS", "SCORE",
                                  "COST", "HS AGE", "RX kb/s", "TX kb/s", "CLASSES")]
    for p in doc["paths"]:
        state = ("up" if not p["suspected"] else "suspect") if p["up"] else \
            "connecting" if p["suspected"] else "down"
        rows.append((p["name"], state, _num(p["rtt_smoothed_ms"]), _num(p["rtt_p95_ms"]),
                     _num(p["jitter_ms"]), f"{p['loss'] * 100:.1f}%", f"{p['score']:.2f}",
                     f"{p['cost']:g}", _num(p["handshake_age_s"], "{:.0f}s"),
                     f"{p['rx_bps'] / 1000:.0f}", f"{p['tx_bps'] / 1000:.0f}",
                     ",".join(p["classes"]) or "-"))
    if doc["paths"]:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
    recent = doc["events"][-events:] if events else []
    if recent:
        lines.append("events:")
        lines += ["  " + render_event(e) for e in recent]
    return "\n".join(lines)
