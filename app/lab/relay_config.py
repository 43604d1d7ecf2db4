"""The relay's input file (relay.json): its paths, their profiles and the timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.lab.scenario import Scenario

if TYPE_CHECKING:
    from app.lab.topology import LabInfo


def relay_config(info: LabInfo, scen: Scenario) -> dict[str, Any]:
    from app.lab.topology import PROBE_BASE_PORT, RELAY_BASE_PORT, WG_PORT

    return {
        "lab": info.name,
        "started_at": info.started_at,
        "control": str(info.relay_socket),
        "paths": [
            {
                "name": p.name,
                "upstream_bind": f"198.18.{10 + i}.1",
                "forwards": [
                    # (listen port on wan, target on the gateway)
                    [RELAY_BASE_PORT + i, f"198.18.{10 + i}.2", WG_PORT],
                    [PROBE_BASE_PORT + i, f"198.18.{10 + i}.2", PROBE_BASE_PORT],
                ],
                "up": p.up.to_json(),
                "down": p.down.to_json(),
            }
            for i, p in enumerate(scen.paths)
        ],
        "timeline": [e.to_json() for e in scen.timeline],
    }
