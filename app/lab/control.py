"""Change and read a running lab: path impairments (through the relay) and status."""

from __future__ import annotations

from typing import Any

from app.core.errors import BraidError
from app.lab import proc, topology
from app.lab.link import BACKBONE, DIRECTIONS, LINKS, WAN, check_changes
from app.lab.model import SHARED, backbone_iface, exit_iface
from app.lab.relay_client import relay_request
from app.lab.wgpeer import uapi_answers


def impair(lab: str, path: str, changes: dict[str, Any],
           dirs: tuple[str, ...] = DIRECTIONS, *, reset: bool = False,
           link: str = WAN) -> dict[str, Any]:
    """Change ``path``'s ``link`` (wan, backbone) now in ``dirs``; returns the path's
    status after the change.

    ``reset`` first puts the link back to its scenario profile (ending running episodes;
    later timeline entries still come), then applies ``changes``.
    """
    info = topology.load(lab)
    info.gateway(path)  # BraidError naming the paths there are
    if not changes and not reset:
        raise BraidError("nothing to change",
                         "give a setting, e.g. --loss 5 or --down (see braid lab impair -h)")
    if link not in LINKS:
        raise BraidError(f"no link {link!r} on a path", f"use one of: {', '.join(LINKS)}")
    checked = check_changes(changes, f"path {path} {link}")
    reply = relay_request(info.relay_socket, {"op": "set", "path": path, "link": link,
                                              "dirs": list(dirs), "changes": checked,
                                              "reset": reset})
    return next(p for p in reply["paths"] if p["name"] == path)


def status(lab: str) -> dict[str, Any]:
    info = topology.load(lab)
    nodes = {}
    shared = info.exit == SHARED
    for node in ["client", "wan", "server"] + [f"gw-{g.name}" for g in info.gateways] + (
            ["exit"] if shared else []) + (["base"] if info.baseline else []):
        ns = topology.netns(lab, node)
        nodes[node] = {"netns": ns, "exists": proc.ns_exists(ns),
                       "processes": len(proc.ns_pids(ns))}
    relay = relay_request(info.relay_socket, {"op": "status"})
    paths = []
    for gw in info.gateways:
        doc = next(p for p in relay["paths"] if p["name"] == gw.name)
        wireguard = [topology.gateway_iface(lab, gw.name)]
        if shared:
            wireguard += [backbone_iface(lab, gw.name), exit_iface(lab, gw.name)]
        paths.append({
            "name": gw.name, "endpoint": gw.endpoint, "gateway_address": gw.gateway_address,
            "client_address": gw.client_address, "client_interface": gw.client_interface,
            "probe": gw.probe,
            "gateway_wireguard": all(uapi_answers(i) for i in wireguard),
            **{k: doc[k] for k in ("flows", *DIRECTIONS, BACKBONE)},
        })
    return {
        "name": info.name, "scenario": info.scenario, "exit": info.exit, "ipv6": info.ipv6,
        "started_at": info.started_at,
        "t": relay["t"], "timeline_left": relay["timeline_left"],
        "server_address": info.server_address, "baseline": info.baseline,
        "helper_socket": str(info.helper_socket), "helper_up": info.helper_socket.exists(),
        "profile": f"lab-{lab}", "nodes": nodes, "paths": paths,
    }
