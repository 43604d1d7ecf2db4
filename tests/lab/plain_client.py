"""A plain client for lab tests that do without the engine: one wireguard-go tunnel per
gateway in the lab's client namespace (named as Braid's would be, br-<lab>-<gw>, so the
lab's teardown finds them), with the lab's client keys and addresses, and the far side's
server routed into one tunnel at a time by the test (`ip route replace`), as an engine
moving a class would.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.helper import uapi
from app.lab import proc, topology
from app.lab.scenario import parse_scenario
from app.lab.topology import LabInfo
from app.lab.wgpeer import UapiPeer, configure
from tests.lab.conftest import unique_lab
from tests.util import wait_until

SERVER, SERVER6 = "198.18.200.1", "2001:2:0:200::1"
MTU = 1420


@dataclass
class PlainClient:
    info: LabInfo

    @property
    def ns(self) -> str:
        return topology.netns(self.info.name, "client")

    def ip(self, *args: str) -> str:
        return proc.run_tool(["ip", "-n", self.ns, *args])

    def route_server(self, gateway: str) -> None:
        """The far side's server into ``gateway``'s tunnel, from its address there."""
        gw = self.info.gateway(gateway)
        self.ip("route", "replace", f"{SERVER}/32", "dev", gw.client_interface,
                "src", gw.client_address.split("/")[0])

    def route_server6(self, gateway: str) -> None:
        """The server's IPv6 address into ``gateway``'s tunnel (a lab built with IPv6)."""
        gw = self.info.gateway(gateway)
        assert gw.client_address6 is not None
        self.ip("-6", "route", "replace", f"{SERVER6}/128", "dev", gw.client_interface,
                "src", gw.client_address6.split("/")[0])

    def route_probe(self, target: str, gateway: str) -> None:
        self.ip("route", "replace", f"{target}/32", "dev",
                self.info.gateway(gateway).client_interface)

    def run(self, code: str, timeout: float = 30.0) -> str:
        """Python ``code`` run inside the client namespace; its stdout."""
        done = subprocess.run(["ip", "netns", "exec", self.ns, "python3", "-c", code],
                              capture_output=True, text=True, timeout=timeout,
                              env=topology.python_env())
        if done.returncode != 0:
            raise AssertionError(f"client code failed: {done.stderr.strip()[-1500:]}")
        return done.stdout

    def answers(self, target: str, count: int = 3) -> int:
        """ICMP echo replies from ``target`` (to ``count`` requests), however routed."""
        out = self.run(
            "import icmplib, json;"
            f"r = icmplib.ping({target!r}, count={count}, interval=0.05, timeout=1,"
            " privileged=True); print(json.dumps(r.packets_received))")
        return int(json.loads(out))


@contextlib.contextmanager
def lab_with_client(scenario: dict[str, Any], **build: Any) -> Iterator[PlainClient]:
    """A lab of ``scenario`` (no helper, no profile) and its plain client, for a module."""
    name = unique_lab()
    info = topology.build(name, parse_scenario(scenario, name=name, where="test"),
                          start_helper=False, write_profile=False, **build)
    try:
        yield start(info)
    finally:
        topology.destroy(name)


def start(info: LabInfo) -> PlainClient:
    """One tunnel per gateway, up and shaken hands, the server routed through the first."""
    client = PlainClient(info)
    log = info.runtime_dir / "log"
    for gw in info.gateways:
        iface = gw.client_interface
        proc.start_daemon(client.ns, ["wireguard-go", "-f", iface], log / f"{iface}.log")
        wait_until(lambda iface=iface: uapi.answers(iface), timeout=10,  # type: ignore[misc]
                   message=f"wireguard-go {iface} never answered")
        configure(iface, gw.client_private_key, None, [UapiPeer(
            gw.public_key, ("0.0.0.0/0", "::/0"), endpoint=gw.endpoint,
            persistent_keepalive=25)])
        client.ip("addr", "add", gw.client_address, "dev", iface)
        if gw.client_address6:
            client.ip("-6", "addr", "add", gw.client_address6, "dev", iface, "nodad")
        client.ip("link", "set", iface, "mtu", str(MTU), "up")
        client.route_probe(gw.probe, gw.name)
    for gw in info.gateways:
        wait_until(lambda gw=gw: handshaken(gw.client_interface), timeout=15,  # type: ignore[misc]
                   message=f"{gw.client_interface} never shook hands with {gw.name}")
    client.route_server(info.gateways[0].name)
    return client


def handshaken(iface: str) -> bool:
    stats = uapi.stats(iface)
    return stats is not None and any(p.last_handshake for p in stats.peers)
