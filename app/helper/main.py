"""`braid-helper`: Braid's privileged helper (run as root). See docs/helper-protocol.md."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from app.helper import cgroups, dns
from app.helper.classes import Classes
from app.helper.errors import HelperError
from app.helper.reconcile import VERIFY_INTERVAL_S, Reconciler
from app.helper.server import HelperServer
from app.wire.protocol import DEFAULT_SOCKET, DEFAULT_STATE_DIR, IDLE_SECONDS
from app.wire.version import package_version

log = logging.getLogger("braid.helper")


def _resolv_conf(value: str) -> Path:
    try:
        return dns.check_target(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="braid-helper",
        description=(
            "Braid's privileged helper: takes a desired state (WireGuard tunnels, routing "
            "tables, rules, packet marking, DNS) over a unix socket and reconciles the kernel "
            "to it, touching only Braid's own interfaces (br-*), tables 52000-52099, rule "
            "priorities 5200-5299, marks under 0x0f000000, the nft tables inet braid and "
            "inet braid_guard (the kill switch, with table 52099 and priorities 5290-5298) "
            "and the cgroup v2 class groups under its Braid root (braid/<class>). Runs as "
            "root, in a mount namespace of its own (docs/classes.md)."
        ),
    )
    p.add_argument(
        "--socket",
        type=Path,
        default=Path(DEFAULT_SOCKET),
        metavar="PATH",
        help=f"unix socket to serve (default {DEFAULT_SOCKET})",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path(DEFAULT_STATE_DIR),
        metavar="DIR",
        help=f"journal and wireguard-go logs (default {DEFAULT_STATE_DIR})",
    )
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="remove a non-persistent state this long after the client that "
        "applied it disconnects (default 10)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=IDLE_SECONDS,
        metavar="S",
        help="close a connection that sends no request for this long, except the one "
        f"whose state is in force (default {IDLE_SECONDS:g})",
    )
    p.add_argument(
        "--verify-seconds",
        type=float,
        default=VERIFY_INTERVAL_S,
        metavar="S",
        help="compare the kernel with the state this often, besides on kernel events, "
        f"and repair what differs (default {VERIFY_INTERVAL_S:g})",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "kernel", "userspace"),
        default="auto",
        help="WireGuard backend: the kernel module, wireguard-go, or auto "
        "(the kernel where it has WireGuard)",
    )
    p.add_argument(
        "--dns",
        choices=dns.CHOICES,
        default="auto",
        help="how a state's DNS is set: systemd-resolved over D-Bus, resolvconf, or "
        "/etc/resolv.conf itself (restored on disconnect); auto: the first that is the "
        "system's tool (default auto)",
    )
    p.add_argument(
        "--resolv-conf",
        type=_resolv_conf,
        default=dns.RESOLV_CONF,
        metavar="FILE",
        help="the resolv.conf --dns file manages: /etc/resolv.conf, or, for a helper "
        "started with `ip netns exec NS`, /etc/netns/NS/resolv.conf (nothing else is "
        "accepted; default /etc/resolv.conf)",
    )
    p.add_argument(
        "--group", default="braid", help="group whose members may use the socket (default braid)"
    )
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove everything Braid's in this network namespace, the kill switch "
        "included, put the system's DNS back, and exit",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    p.add_argument("--version", action="version", version=f"braid-helper {package_version()}")
    return p


async def run(args: argparse.Namespace, view: cgroups.View) -> int:
    reconciler = Reconciler(args.backend, args.state_dir, args.verify_seconds,
                            classes=Classes(view), dns=args.dns,
                            resolv_conf=args.resolv_conf)
    if args.cleanup:
        found = await reconciler.remove_leftovers()
        print("removed: " + "; ".join(found) if found else "nothing of Braid's was left")
        return 0
    # A guard found is adopted (kept, fail closed); everything else is removed.
    found = await reconciler.start()
    if found:
        log.warning("removed leftovers of an earlier run: %s", "; ".join(found))
    reconciler.recovered = found
    server = HelperServer(reconciler, args.socket, args.grace_seconds, args.group,
                          args.idle_seconds)
    await server.start()
    reconciler.start_watching()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: removing everything")
    # Stopping takes well under a second. Once (a test's helper, in a full suite run) it
    # did not end in 20 s and left no clue why: if it is slow again, the log says where
    # every task is, and then stderr where every thread is.
    slow = loop.call_later(STOP_SLOW_S, _where_everything_is)
    faulthandler.dump_traceback_later(2 * STOP_SLOW_S)
    try:
        await server.close()
        await reconciler.close()
        await reconciler.down()
    except HelperError as exc:
        log.error("could not remove everything: %s (run braid-helper --cleanup)", exc.what)
        return 1
    finally:
        slow.cancel()
        faulthandler.cancel_dump_traceback_later()
    return 0


STOP_SLOW_S = 10.0


def _where_everything_is() -> None:
    log.error("stopping is taking more than %.0f s; where each task is:", STOP_SLOW_S)
    for task in asyncio.all_tasks():
        frames = task.get_stack()
        where = " <- ".join(f"{f.f_code.co_name} ({f.f_code.co_filename}:{f.f_lineno})"
                            for f in reversed(frames)) or "(not started)"
        log.error("  %s: %s", task.get_name(), where)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # BRAID_VERBOSE=1, as for `braid` (app/core/logs.py): a lab's helper started from a
    # verbose shell logs debug too.
    verbose = args.verbose or os.environ.get("BRAID_VERBOSE", "") not in ("", "0")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s braid-helper %(levelname)s %(message)s",
    )
    # pyroute2 logs whole netlink messages at debug level; a WireGuard one holds a key.
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        print(
            "braid-helper: error: must run as root (it changes links, routes, rules "
            "and nftables)\n  what to do: start it with sudo or as the systemd service "
            "braid-helper",
            file=sys.stderr,
        )
        return 2
    for name in ("grace_seconds", "idle_seconds", "verify_seconds"):
        if getattr(args, name) < (0 if name == "grace_seconds" else 0.1):
            flag = "--" + name.replace("_", "-")
            print(f"braid-helper: error: {flag} is too small", file=sys.stderr)
            return 2
    # A namespace's file named outright must be this namespace's, now (the default is
    # checked at each write: a helper that never sets DNS may run anywhere).
    problem = None if args.resolv_conf == dns.RESOLV_CONF else dns.target_problem(
        args.resolv_conf)
    if problem is not None:
        print(f"braid-helper: error: --resolv-conf: {problem}", file=sys.stderr)
        return 2
    # Before any thread exists: the mount namespace is the whole process's.
    view = cgroups.open_view()
    if view.why is not None:
        log.warning("traffic classes by app are off: %s", view.why)
    try:
        return asyncio.run(run(args, view))
    except HelperError as exc:
        print(f"braid-helper: error: {exc.what}\n  what to do: {exc.fix}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
