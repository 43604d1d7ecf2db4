"""`braid lab ...`: build, change, measure and remove the emulated network (docs/lab.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.core.errors import BraidError

DEFAULT_LAB = "lab"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this area's subcommands to ``sub``; each sets ``handler`` (args -> exit code)."""
    lab = sub.add_parser(
        "lab", help="the emulated cross-border network (namespaces, relays, gateways)",
        description="The lab: network namespaces that play the client, the international "
                    "links, the regional gateways, their backbone to a shared exit and the "
                    "far-side server. Needs root. See docs/lab.md.")
    cmds = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)

    def name_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", default=DEFAULT_LAB,
                       help=f"the lab's name (default {DEFAULT_LAB!r}; 1-5 of a-z0-9)")

    def json_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON")

    p = cmds.add_parser("up", help="build a lab and start its gateways, relay, server and helper")
    name_arg(p)
    p.add_argument("--scenario", default="clean",
                   help="a built-in scenario (cn-us, clean, flaky) or a scenario file")
    p.add_argument("--baseline", metavar="PATH",
                   help="also a plain single-path WireGuard tunnel through PATH (node base)")
    p.add_argument("--exit", choices=("shared", "separate"), default="shared",
                   help="shared (default): the gateways carry the client's one address over "
                        "their backbone to one exit, the only NAT; separate: each gateway "
                        "is its own exit")
    p.add_argument("--ipv6", action="store_true",
                   help="IPv6 too: on the client's ISP link (so a leak shows), the tunnels "
                        "and the far side (docs/lab.md, IPv6)")
    p.add_argument("--grace-seconds", type=int, default=10,
                   help="how long the lab's helper keeps tunnels after its client leaves")
    p.add_argument("--no-helper", action="store_true",
                   help="do not start the lab's braid-helper (nor write its profile)")
    json_arg(p)
    p.set_defaults(handler=cmd_up)

    p = cmds.add_parser("down", help="remove a lab (also after a crash)")
    name_arg(p)
    p.add_argument("--all", action="store_true", help="remove every lab on this machine")
    p.set_defaults(handler=cmd_down)

    p = cmds.add_parser("status", help="nodes, paths, each path's profile and counters")
    name_arg(p)
    json_arg(p)
    p.set_defaults(handler=cmd_status)

    p = cmds.add_parser("list", help="the labs that exist and the built-in scenarios")
    json_arg(p)
    p.set_defaults(handler=cmd_list)

    p = cmds.add_parser("impair", help="change a path now (both directions unless --dir)")
    name_arg(p)
    p.add_argument("--path", required=True, help="the path (gateway) name, e.g. hk")
    p.add_argument("--link", choices=("wan", "backbone"), default="wan",
                   help="wan (default): the international link, client to gateway; "
                        "backbone: the gateway's onward link (to the shared exit, or with "
                        "separate exits its own way to the far side)")
    p.add_argument("--dir", choices=("up", "down", "both"), default="both",
                   help="up: towards the far side; down: back (default both)")
    p.add_argument("--delay-ms", type=float, help="one-way delay")
    p.add_argument("--jitter-ms", type=float, help="standard deviation of the delay")
    p.add_argument("--loss", type=float, metavar="PCT", help="random loss, percent")
    p.add_argument("--burst-loss", metavar="P_GB,P_BG",
                   help="Gilbert-Elliott bursty loss: percent chance per packet to enter and "
                        "to leave a burst (e.g. 1,30); 'off' to stop")
    p.add_argument("--rate-mbit", type=float, help="rate limit in Mbit/s (0: unlimited)")
    p.add_argument("--queue-ms", type=float, help="queue in front of the rate limit, in ms")
    p.add_argument("--reorder", type=float, metavar="PCT",
                   help="percent of packets that may overtake (with jitter)")
    p.add_argument("--reset", action="store_true",
                   help="first back to the scenario's profile (ends running episodes)")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--down", action="store_true", help="an outage: drop everything")
    state.add_argument("--up", action="store_true", help="end an outage")
    json_arg(p)
    p.set_defaults(handler=cmd_impair)

    p = cmds.add_parser("exec", help="run a command in a node: braid lab exec client -- CMD")
    name_arg(p)
    p.add_argument("node", help="client, wan, server, gw-<path> or base")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command")
    p.set_defaults(handler=cmd_exec)

    p = cmds.add_parser("stream", help="a realtime-like UDP stream to the server and back")
    name_arg(p)
    p.add_argument("--pps", type=int, default=200, help="packets a second (default 200)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--size", type=int, default=1000, help="bytes of UDP payload (default 1000)")
    p.add_argument("--class", dest="cls", choices=("realtime", "bulk", "default"),
                   help="mark the stream as this class (DSCP)")
    p.add_argument("--baseline", action="store_true",
                   help="from the baseline tunnel's namespace instead of the client")
    p.add_argument("--sticky", action="store_true",
                   help="to a far end that answers only the address the stream's first "
                        "packet came from (as a call's peer does)")
    p.add_argument("--ipv6", action="store_true",
                   help="to the server's IPv6 address (a lab built with --ipv6)")
    json_arg(p)
    p.set_defaults(handler=cmd_stream)

    p = cmds.add_parser("transfer", help="TCP bulk transfer client to server (or --reverse)")
    name_arg(p)
    p.add_argument("--size", type=float, default=10.0, help="MB, all flows (default 10)")
    p.add_argument("--flows", type=int, default=1, help="parallel TCP connections")
    p.add_argument("--reverse", action="store_true", help="server to client")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after (seconds)")
    p.add_argument("--baseline", action="store_true", help="through the baseline tunnel")
    p.add_argument("--mptcp", action="store_true",
                   help="MPTCP connections: one subflow per healthy tunnel (the server "
                        "speaks MPTCP; docs/multipath.md)")
    json_arg(p)
    p.set_defaults(handler=cmd_transfer)

    p = cmds.add_parser("selftest",
                        help="measure the relay against known profiles, on a lab of its own")
    p.add_argument("--quick", action="store_true", help="fewer packets (looser confidence)")
    json_arg(p)
    p.set_defaults(handler=cmd_selftest)


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=1, default=str)
    print()


def cmd_up(args: argparse.Namespace) -> int:
    from app.lab import topology

    scenario: str | Path = args.scenario
    if "/" in args.scenario or args.scenario.endswith(".toml"):
        scenario = Path(args.scenario)
    info = topology.build(args.name, scenario, baseline=args.baseline,
                          start_helper=not args.no_helper, write_profile=not args.no_helper,
                          helper_grace_seconds=args.grace_seconds, exit=args.exit,
                          ipv6=args.ipv6)
    if args.json:
        _print_json(topology.info_json(info))
        return 0
    exits = ("one shared exit (the only NAT)" if info.exit == "shared"
             else "separate exits (each gateway its own NAT)")
    print(f"lab {info.name!r} is up on scenario {info.scenario!r}, {exits}")
    print(f"  server {info.server_address} (UDP echo 9000, sink 9001, sticky echo 9004; "
          f"TCP bulk 9002, sink 9003; HTTP 8080)")
    for gw in info.gateways:
        print(f"  path {gw.name:<4} endpoint {gw.endpoint:<17} gateway {gw.gateway_address:<11}"
              f" client {gw.client_address:<15} probe {gw.probe:<11} "
              f"tunnel {gw.client_interface}")
    if info.baseline:
        print(f"  baseline: {topology.baseline_iface(info.name)} through {info.baseline} "
              f"(braid lab stream --baseline)")
    if not args.no_helper:
        print(f"  helper {info.helper_socket}; profile lab-{info.name}")
        print(f"next: braid up --lab {info.name}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from app.lab import topology

    existing = topology.lab_names()
    names = existing if args.all else [args.name]
    if not names:
        print("no labs to remove")
    for name in names:
        # Also when it looks absent: destroy is idempotent and forgets the lab's profile.
        topology.destroy(name)
        print(f"lab {name!r} removed" if name in existing else f"lab {name!r}: nothing to remove")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from app.lab import topology
    from app.lab.scenario import builtin_names

    doc = {"labs": topology.lab_names(), "scenarios": builtin_names()}
    if args.json:
        _print_json(doc)
    else:
        print("labs:", ", ".join(doc["labs"]) or "none")
        print("built-in scenarios:", ", ".join(doc["scenarios"]))
    return 0


def _profile_text(p: dict[str, Any]) -> str:
    parts = [f"delay {p['delay_ms']:g} ms"]
    if p["jitter_ms"]:
        parts.append(f"jitter {p['jitter_ms']:g} ms")
    if p["loss_pct"]:
        parts.append(f"loss {p['loss_pct']:g} %")
    if p["burst_loss"]:
        parts.append(f"bursts {p['burst_loss'][0]:g}/{p['burst_loss'][1]:g} %")
    if p["rate_mbit"] is not None:
        parts.append(f"rate {p['rate_mbit']:g} Mbit/s (queue {p['queue_ms']:g} ms)")
    if p["reorder_pct"]:
        parts.append(f"reorder {p['reorder_pct']:g} %")
    return "DOWN" if p["down"] else ", ".join(parts)


def _path_lines(p: dict[str, Any]) -> list[str]:
    lines = []
    links: list[tuple[str, dict[str, Any]]] = [("wan", p)]
    if p.get("backbone"):
        links.append(("backbone", p["backbone"]))
    for link, doc in links:
        for d in ("up", "down"):
            c = doc[d]["counters"]
            lost = c["lost_random"] + c["lost_burst"] + c["lost_queue"] + c["lost_down"]
            lines.append(f"    {link:<8} {d:<4} {_profile_text(doc[d]['profile'])}; "
                         f"{c['in_pkts']} in, {c['out_pkts']} out, {lost} lost, "
                         f"queue {doc[d]['queue_ms']:g} ms")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    from app.lab.control import status

    doc = status(args.name)
    if args.json:
        _print_json(doc)
        return 0
    print(f"lab {doc['name']!r}: scenario {doc['scenario']!r}, {doc['exit']} exit, "
          f"t = {doc['t']:.1f} s, {doc['timeline_left']} timeline entries to come")
    nodes = ", ".join(f"{n} ({v['processes']} proc)" if v["exists"] else f"{n} MISSING"
                      for n, v in doc["nodes"].items())
    print(f"  nodes: {nodes}")
    print(f"  helper: {doc['helper_socket']} ({'up' if doc['helper_up'] else 'not running'})")
    for p in doc["paths"]:
        wg = "up" if p["gateway_wireguard"] else "NOT ANSWERING"
        print(f"  path {p['name']}: {p['endpoint']} -> gateway {p['gateway_address']} "
              f"(wireguard {wg}), probe {p['probe']}, {p['flows']} client flow(s)")
        print("\n".join(_path_lines(p)))
    return 0


def impair_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for opt, key in (("delay_ms", "delay_ms"), ("jitter_ms", "jitter_ms"), ("loss", "loss_pct"),
                     ("queue_ms", "queue_ms"), ("reorder", "reorder_pct")):
        value = getattr(args, opt)
        if value is not None:
            changes[key] = value
    if args.rate_mbit is not None:
        changes["rate_mbit"] = None if args.rate_mbit == 0 else args.rate_mbit
    if args.burst_loss is not None:
        changes["burst_loss"] = _burst_arg(args.burst_loss)
    if args.down or args.up:
        changes["down"] = bool(args.down)
    return changes


def _burst_arg(text: str) -> list[float] | None:
    if text.strip().lower() == "off":
        return None
    try:
        p_gb, p_bg = (float(v) for v in text.split(","))
    except ValueError:
        raise BraidError(f"--burst-loss {text!r} is not two numbers",
                         "write P_GB,P_BG in percent, e.g. --burst-loss 1,30 (or 'off')") from None
    return [p_gb, p_bg]


def cmd_impair(args: argparse.Namespace) -> int:
    from app.lab.control import impair
    from app.lab.link import DIRECTIONS

    dirs = DIRECTIONS if args.dir == "both" else (args.dir,)
    doc = impair(args.name, args.path, impair_changes(args), dirs, reset=args.reset,
                 link=args.link)
    if args.json:
        _print_json(doc)
    else:
        print(f"path {args.path}:")
        print("\n".join(_path_lines(doc)))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from app.lab import topology

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise BraidError("no command given", "write the command after --: "
                         "braid lab exec client -- ip route")
    topology.load(args.name)  # a clear error if the lab is not up
    return topology.run_in(args.name, args.node, cmd).wait()


def _stats(label: str, s: dict[str, float] | None) -> str:
    if not s:
        return f"  {label:<16} -"
    return (f"  {label:<16} mean {s['mean']:7.2f}  p50 {s['p50']:7.2f}  p95 {s['p95']:7.2f}  "
            f"p99 {s['p99']:7.2f}  max {s['max']:7.2f} ms")


def require_braid_up(lab: str, baseline: bool) -> None:
    """A stream or transfer through a lab with nothing connected would only report 100 %
    loss or wait for its timeout: say what is wrong instead."""
    if baseline:
        return
    from app.core.helper_client import SyncHelperClient
    from app.lab import topology

    info = topology.load(lab)
    try:
        with SyncHelperClient(info.helper_socket) as helper:
            tunnels = helper.status().tunnels
    except BraidError:
        tunnels = ()
    if not tunnels:
        raise BraidError(f"Braid is not up on lab {lab!r}: nothing would carry the traffic",
                         f"connect first: braid up --lab {lab} (or measure the plain tunnel "
                         "with --baseline, on a lab built with --baseline PATH)")


def cmd_stream(args: argparse.Namespace) -> int:
    from app.lab.stream import stream

    require_braid_up(args.name, args.baseline)
    result = stream(args.name, pps=args.pps, duration=args.duration, size=args.size,
                    cls=args.cls, baseline=args.baseline, sticky=args.sticky,
                    ipv6=args.ipv6).to_json()
    if args.json:
        _print_json(result)
        return 0
    r = result
    up_loss = "-" if r["up_loss_pct"] is None else f"{r['up_loss_pct']:.2f} %"
    print(f"stream from {r['node']}: {r['pps']} pps x {r['size']} B for {r['duration_s']:g} s"
          + (f", class {r['cls']}" if r["cls"] else ""))
    print(f"  sent {r['sent']}, received {r['received']}, loss {r['loss_pct']:.2f} % "
          f"(round trip; up {up_loss})")
    print(_stats("one-way up", r["delay_up"]))
    print(_stats("one-way down", r["delay_down"]))
    print(_stats("round trip", r["rtt"]))
    jitter = "-" if r["jitter_ms"] is None else f"{r['jitter_ms']:.2f} ms"
    gap = "-" if r["max_gap_ms"] is None else f"{r['max_gap_ms']:.1f} ms"
    print(f"  jitter {jitter}, longest gap {gap} (round trip), stutter "
          f"{r['stutter_frames']} of {r['frames']} frames ({r['stutter_pct']:.1f} %: lost "
          f"or late for a jitter buffer), over 150 ms one way "
          f"{r.get('over_150_frames', 0)} ({r.get('over_150_pct', 0.0):.1f} %)")
    if r["up_gap_ms"] is None and r["down_gap_ms"] is None:
        print("  per direction: - (the far end's statistics did not come back)")
    else:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f} ms"

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f} %"

        print(f"  longest gap up {ms(r['up_gap_ms'])} (at the far end), down "
              f"{ms(r['down_gap_ms'])} (at the client); loss up {pct(r['up_loss_pct'])}, "
              f"down {pct(r['down_loss_pct'])}")
        sticky = f", {r['ignored']} ignored (not from its first)" if r["port"] == 9004 else ""
        print(f"  the far end saw it from {r['server_sources']} address(es){sticky}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from app.lab.transfer import transfer

    require_braid_up(args.name, args.baseline)
    result = transfer(args.name, size_mb=args.size, flows=args.flows, reverse=args.reverse,
                      timeout=args.timeout, baseline=args.baseline, mptcp=args.mptcp)
    if args.json:
        _print_json(result.to_json())
    else:
        state = "done" if result.completed else "TIMED OUT"
        print(f"transfer {result.direction}: {result.done_bytes / 1e6:.1f} of "
              f"{result.size_bytes / 1e6:.1f} MB over {result.flows} flow(s) in "
              f"{result.seconds:.2f} s: {result.mbit_s:.1f} Mbit/s ({state})")
        if args.mptcp:
            print("  the server saw " + (f"MPTCP, up to {result.mptcp_subflows} subflow(s)"
                                         if result.mptcp_subflows is not None else
                                         "plain TCP (or, downloading, did not say)"))
    return 0 if result.completed else 1


def cmd_selftest(args: argparse.Namespace) -> int:
    from app.lab.selftest import run_selftest

    report = run_selftest(quick=args.quick)
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.text())
    return 0 if report.passed else 1

