"""Node-role tests: a scratch network namespace per test that plays the node, with an
uplink (a veth pair inside it), removed whatever happens; and what the kernel holds
there, dumped for before/after comparisons."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.helper import uapi
from app.lab import proc
from app.lab.topology import python_env
from tests.util import unique_name, wg_keypair

LOG_ROOT = Path("/run/braid/nodetest")


@dataclass(frozen=True)
class Node:
    ns: str
    tag: str  # unique in this test run: goes into interface names (wireguard-go's UAPI
    #           sockets share one directory across namespaces)

    def iface(self, prefix: str, suffix: str) -> str:
        return f"{prefix}-{self.tag}-{suffix}"

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m app.node ARGS` inside the node, as a user runs it there."""
        return subprocess.run(["ip", "netns", "exec", self.ns, "python3", "-m", "app.node",
                               *args], input=stdin, capture_output=True, text=True,
                              timeout=60, env=python_env())

    def apply(self, state: dict[str, Any]) -> list[str]:
        done = self.run("apply", "--json", "--log-dir", str(LOG_ROOT / self.tag),
                        stdin=json.dumps(state))
        assert done.returncode == 0, done.stderr
        changes: list[str] = json.loads(done.stdout)["changes"]
        return changes

    def sh(self, *argv: str) -> str:
        return proc.run_in_ns(self.ns, list(argv))


@pytest.fixture
def node() -> Iterator[Node]:
    tag = unique_name("t")
    ns = f"bnt-{tag}"
    proc.ip("netns", "add", ns)
    try:
        proc.run_in_ns(ns, ["sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1"])
        proc.ip(ns=ns, batch=["link set lo up", "link add up0 type veth peer name up1",
                              "link set up0 up", "link set up1 up",
                              "addr add 192.0.2.2/24 dev up0", "route add default via 192.0.2.1"])
        yield Node(ns, tag)
    finally:
        proc.stop(proc.ns_pids(ns))
        with contextlib.suppress(Exception):
            proc.ip("netns", "del", ns)
        for sock in uapi.UAPI_DIR.glob(f"*{tag}*.sock") if uapi.UAPI_DIR.exists() else []:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        shutil.rmtree(LOG_ROOT / tag, ignore_errors=True)


def key() -> str:
    return wg_keypair()[0]


def pub() -> str:
    return wg_keypair()[1]


VOLATILE = ("last_handshake_time", "rx_bytes", "tx_bytes")


def dump(node: Node) -> dict[str, Any]:
    """Everything a role may change in the node, as text (handshake times and byte
    counters left out: they change by themselves)."""
    out: dict[str, Any] = {}
    for name, argv in {
        "links": ["ip", "-d", "link", "show"],
        "addresses": ["ip", "addr", "show"],
        "routes": ["ip", "route", "show", "table", "all"],
        "routes6": ["ip", "-6", "route", "show", "table", "all"],
        "rules": ["ip", "rule"],
        "rules6": ["ip", "-6", "rule"],
        "nft": ["nft", "list", "ruleset"],
        "sysctl": ["sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"],
    }.items():
        out[name] = node.sh(*argv)
    links = json.loads(node.sh("ip", "-d", "-j", "link", "show"))
    for link in links:
        name = link["ifname"]
        if name.startswith(("bg-", "bx-")) and link.get("linkinfo", {}).get("info_kind") == "tun":
            out[f"rp_filter {name}"] = node.sh("sysctl", f"net.ipv4.conf.{name}.rp_filter")
            reply = uapi.exchange(name, "get=1\n\n")
            out[f"wireguard {name}"] = sorted(
                line for line in reply.splitlines() if not line.startswith(VOLATILE))
    out["processes"] = sorted(proc.ns_pids(node.ns))
    return out
