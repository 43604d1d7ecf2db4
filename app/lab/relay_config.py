"""The relay's input file (relay.json): its paths, their links' profiles, the forwards
(which links each crosses) and the timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.lab.link import BACKBONE, DIRECTIONS, LINKS, WAN
from app.lab.scenario import Scenario

if TYPE_CHECKING:
    from app.lab.topology import LabInfo


def relay_config(info: LabInfo, scen: Scenario) -> dict[str, Any]:
    from app.lab.model import (
        BACKBONE_BASE_PORT,
        BACKBONE_PROBE_BASE_PORT,
        EXIT_UNDERLAY,
        EXIT_WAN,
        EXIT_WG_BASE_PORT,
        PROBE_BASE_PORT,
        RELAY_BASE_PORT,
        SHARED,
        WG_PORT,
    )

    shared = info.exit == SHARED
    paths = []
    for i, p in enumerate(scen.paths):
        gw, wan = f"198.18.{10 + i}.2", f"198.18.{10 + i}.1"
        # (listen port on wan, target host, target port, source address, links crossed)
        forwards: list[list[Any]] = [
            # With separate exits the gateway's own way to the far side is its backbone,
            # carried here, in series after the international link.
            [RELAY_BASE_PORT + i, gw, WG_PORT, wan, [WAN] if shared else [WAN, BACKBONE]],
            [PROBE_BASE_PORT + i, gw, PROBE_BASE_PORT, wan, [WAN]],
        ]
        if shared:
            forwards += [
                [BACKBONE_BASE_PORT + i, EXIT_UNDERLAY, EXIT_WG_BASE_PORT + i, EXIT_WAN,
                 [BACKBONE]],
                [BACKBONE_PROBE_BASE_PORT + i, EXIT_UNDERLAY, BACKBONE_PROBE_BASE_PORT + i,
                 EXIT_WAN, [BACKBONE]],
            ]
        paths.append({
            "name": p.name,
            "links": {link: {d: p.profile(link, d).to_json() for d in DIRECTIONS}
                      for link in LINKS},
            "forwards": forwards,
        })
    return {
        "lab": info.name,
        # Set by the "start" request once the lab is built (topology.py): its timeline
        # counts from when the lab is usable, however long the build took.
        "started_at": None,
        "control": str(info.relay_socket),
        "paths": paths,
        "timeline": [e.to_json() for e in scen.timeline],
    }
