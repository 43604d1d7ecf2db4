"""Tell the core how a lab's targets are placed (app/core/targets.py): importing this
module registers the lab; the CLI and the tray app import it at start."""

from __future__ import annotations

from app.core import targets
from app.core.profiles.model import Profile


def _placement(lab: str, profile: Profile) -> targets.Placement:
    from app.lab import topology

    info = topology.load(lab)
    return targets.Placement(
        helper_socket=info.helper_socket,
        netns=topology.netns(lab, "client"),
        # Each path's probe answers through that path alone: the gateway itself, or with
        # a shared exit the exit's end of the gateway's backbone (the whole way there).
        probe_targets={gw.name: gw.probe for gw in info.gateways},
    )


targets.register_lab(_placement)
