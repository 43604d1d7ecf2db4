"""The lab's gateways and exit as Braid node roles (app/node): the lab's description of
its nodes, and each node's state applied inside its namespace by `python -m app.node`,
the same code `braid gateway apply` runs on a user's node.

The description follows the lab's address plan (docs/internals.md): gateway i's tunnel
198.19.i.1/24 behind the relay's 198.18.0.1:51000+i; with a shared exit, the clients in
198.19.100.0/24 (Braid .2, the baseline .3) on every tunnel, gateway i's backbone to the
exit through the relay's 51100+i, and the exit's end of it at 198.19.(32+i).1; with
separate exits, each client at 198.19.i.(2|3) and each gateway its own NAT.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import BraidError
from app.helper import uapi
from app.lab.model import (
    BACKBONE_BASE_PORT,
    BASELINE_HOST,
    CLIENT_HOST,
    CLIENT_WAN,
    EXIT_WG_BASE_PORT,
    RELAY_BASE_PORT,
    SHARED,
    SHARED_CLIENT_SUBNET,
    SHARED_CLIENT_SUBNET6,
    WG_PORT,
    LabInfo,
    backbone_iface,
    exit_iface,
    gateway_iface,
    netns,
)
from app.lab.nodes import UPLINK, python_argv, python_env
from app.lab.scenario import Scenario
from app.node import describe
from app.node.describe import Backbone, ClientSpec, ExitSpec, GatewaySpec, Nodes
from app.node.keys import genkey
from app.node.state import to_json
from app.wire.state import DEFAULT_MTU

EXIT_NODE = "exit"
CLIENT, BASELINE = "braid", "base"
APPLY_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 10.0


def lab_nodes(lab: str, scen: Scenario, exit: str, client_keys: dict[str, str],
              ipv6: bool = False) -> Nodes:
    """The lab's description; ``client_keys`` are Braid's client's, per gateway."""
    shared = exit == SHARED
    gateways = []
    for i, path in enumerate(scen.paths):
        backbone = None
        if shared:
            backbone = Backbone(
                interface=backbone_iface(lab, path.name), private_key=genkey(),
                exit_interface=exit_iface(lab, path.name), exit_private_key=genkey(),
                exit_port=EXIT_WG_BASE_PORT + i,
                # Through the relay's backbone link for this path, not straight there.
                exit_endpoint=f"198.18.{10 + i}.1:{BACKBONE_BASE_PORT + i}",
                exit_address=f"198.19.{32 + i}.1/32", mark=i + 1)
        gateways.append(GatewaySpec(
            name=path.name, endpoint=f"{CLIENT_WAN}:{RELAY_BASE_PORT + i}",
            subnet=f"198.19.{i}.0/24", interface=gateway_iface(lab, path.name),
            private_key=genkey(), listen_port=WG_PORT, backbone=backbone,
            egress=None if shared else UPLINK, subnet6=f"2001:2:0:a{i}::/64" if ipv6 else None))
    clients = (
        ClientSpec(CLIENT, CLIENT_HOST, tuple((p.name, client_keys[p.name]) for p in scen.paths)),
        ClientSpec(BASELINE, BASELINE_HOST, tuple((p.name, genkey()) for p in scen.paths)),
    )
    return Nodes(exit, SHARED_CLIENT_SUBNET if shared else None, DEFAULT_MTU,
                 ExitSpec(EXIT_NODE, UPLINK) if shared else None, tuple(gateways), clients,
                 SHARED_CLIENT_SUBNET6 if shared and ipv6 else None)


def node_of(nodes: Nodes, name: str) -> str:
    """The lab node (namespace suffix) a described node runs in."""
    return EXIT_NODE if nodes.exit is not None and name == nodes.exit.name else f"gw-{name}"


@dataclass
class Applying:
    """The nodes' apply, running (start_apply); finish() waits for it."""

    child: subprocess.Popen[bytes]
    log: Path

    def finish(self) -> None:
        """BraidError quoting the node that failed."""
        try:
            _, err = self.child.communicate(timeout=APPLY_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.communicate()
            raise BraidError(f"the lab's nodes took more than {APPLY_TIMEOUT:g} s to apply",
                             f"see {self.log}") from None
        if self.child.returncode != 0:
            # The build removes the lab (and this log) on failure: quote it here.
            raise BraidError("the lab's nodes did not apply: "
                             + err.decode(errors="replace").strip()[-800:],
                             "fix what it says, then build the lab again")


def start_apply(info: LabInfo, nodes: Nodes) -> Applying:
    """Every node's state, applied in its namespace by the node roles' reconcile
    (nodeapply.py), in the background: the build wires the underlay meanwhile (the roles
    touch none of it). Output: log/nodes.log."""
    log_dir = info.runtime_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    batch = {"log_dir": str(log_dir), "nodes": [
        {"name": name, "netns": netns(info.name, node_of(nodes, name)),
         "state": to_json(describe.node_state(nodes, name))} for name in nodes.node_names]}
    log = log_dir / "nodes.log"
    with open(log, "ab") as out:
        child = subprocess.Popen(python_argv("app.lab.nodeapply"), env=python_env(),
                                 stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE)
    assert child.stdin is not None
    child.stdin.write(json.dumps(batch).encode())  # keys on stdin only
    child.stdin.close()
    child.stdin = None  # communicate() must not flush it again
    return Applying(child, log)


def wait_backbones(info: LabInfo, nodes: Nodes) -> None:
    """Until the exit has heard from every gateway: before, it could not answer them."""
    ifaces = [gw.backbone.exit_interface for gw in nodes.gateways if gw.backbone]

    def pending() -> list[str]:
        out = []
        for iface in ifaces:
            stats = uapi.stats(iface)
            if stats is None or not any(p.last_handshake for p in stats.peers):
                out.append(iface)
        return out

    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    while waiting := pending():
        if time.monotonic() > deadline:
            raise BraidError(f"the exit heard no handshake on {', '.join(waiting)} in "
                             f"{HANDSHAKE_TIMEOUT:g} s",
                             "see the lab's logs, then build the lab again")
        time.sleep(0.02)
