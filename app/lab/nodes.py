"""Starting a lab's parts: links and addresses, relay, server apps, baseline and helper
(the gateways and the exit are node roles: roles.py). Each start waits until the part
answers, so a build that returns is usable.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from app.core.errors import BraidError
from app.lab import proc
from app.lab.model import (
    BASE_WAN,
    CLIENT_WAN,
    CLIENT_WAN6,
    EXIT_UNDERLAY,
    EXIT_UPLINK,
    EXIT_UPLINK_PEER,
    EXIT_WAN,
    RELAY_BASE_PORT,
    SERVER_ADDRESS,
    SERVER_ADDRESS6,
    SHARED,
    LabGateway,
    LabInfo,
    baseline_iface,
    netns,
)
from app.lab.scenario import Scenario
from app.lab.wait import wait_until
from app.lab.wgpeer import UapiPeer, configure, uapi_answers, uapi_path

START_TIMEOUT = 10.0
NETNS_ETC = Path("/etc/netns")  # `ip netns exec NS` bind-mounts NETNS_ETC/NS/* over /etc/*
UPLINK = "srv0"  # a separate-exit gateway's and the exit's link towards the server
REPO_ROOT = Path(__file__).resolve().parents[2]
MPTCP_SERVER_SUBFLOWS = 8  # the kernel's most


def no_link_local(ns: str) -> None:
    """Links made in ``ns`` from now on get no IPv6 link-local address.

    The lab speaks IPv4 only. A link-local address would go through duplicate address
    detection for a second or two after the build, and the kernel would keep adding
    routes meanwhile: a lab that returned would still be changing by itself.
    """
    if Path("/proc/sys/net/ipv6").exists():  # absent when the host boots with ipv6.disable=1
        proc.run_in_ns(ns, ["sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1"])


def wire(lab: str, scen: Scenario, baseline: str | None, exit: str,
         ipv6: bool = False) -> None:
    """Veths, addresses and the nodes' own (underlay) routes of the address plan; the wan
    forwards nothing, only its relays carry packets across. What the gateways and the
    exit do with their tunnels is their roles' (roles.py), not set here."""
    client, wan, server = netns(lab, "client"), netns(lab, "wan"), netns(lab, "server")
    proc.ip(ns=client, batch=[
        f"link add wan0 type veth peer name cl0 netns {wan}",
        "link set lo up", "link set wan0 up",
        "addr add 198.18.0.2/24 dev wan0",
        f"route add default via {CLIENT_WAN}",
    ])
    wan_cmds = ["link set lo up", "link set cl0 up", "addr add 198.18.0.1/24 dev cl0"]
    if baseline:
        base = netns(lab, "base")
        proc.ip(ns=base, batch=[
            f"link add wan0 type veth peer name bs0 netns {wan}",
            "link set lo up", "link set wan0 up",
            "addr add 198.18.1.2/24 dev wan0",
        ])
        wan_cmds += ["link set bs0 up", "addr add 198.18.1.1/24 dev bs0"]
    server_cmds = ["link set lo up", f"addr add {SERVER_ADDRESS}/32 dev lo"]
    shared = exit == SHARED
    for i, path in enumerate(scen.paths):
        gw = netns(lab, f"gw-{path.name}")
        cmds = [f"link add wan0 type veth peer name gw-{path.name} netns {wan}",
                "link set lo up", "link set wan0 up", f"addr add 198.18.{10 + i}.2/24 dev wan0"]
        if shared:
            # Its uplink, as a real gateway has one; the wan forwards nothing, and the
            # gateway role routes its clients into the backbone, never here.
            cmds.append(f"route add default via 198.18.{10 + i}.1")
        else:
            cmds += [f"link add {UPLINK} type veth peer name gw-{path.name} netns {server}",
                     f"link set {UPLINK} up", f"addr add 198.18.{100 + i}.1/24 dev {UPLINK}",
                     f"route add {SERVER_ADDRESS}/32 via 198.18.{100 + i}.2"]
            server_cmds += [f"link set gw-{path.name} up",
                            f"addr add 198.18.{100 + i}.2/24 dev gw-{path.name}"]
        proc.ip(ns=gw, batch=cmds)
        wan_cmds += [f"link set gw-{path.name} up",
                     f"addr add 198.18.{10 + i}.1/24 dev gw-{path.name}"]
    if shared:
        proc.ip(ns=netns(lab, "exit"), batch=[
            f"link add wan0 type veth peer name exit netns {wan}",
            f"link add {UPLINK} type veth peer name exit netns {server}",
            "link set lo up", "link set wan0 up", f"link set {UPLINK} up",
            f"addr add {EXIT_UNDERLAY}/24 dev wan0",
            f"addr add {EXIT_UPLINK}/24 dev {UPLINK}",
            # The far side is its internet.
            f"route add default via {EXIT_UPLINK_PEER}",
        ])
        wan_cmds += ["link set exit up", f"addr add {EXIT_WAN}/24 dev exit"]
        server_cmds += ["link set exit up", f"addr add {EXIT_UPLINK_PEER}/24 dev exit"]
    proc.ip(ns=wan, batch=wan_cmds)
    proc.ip(ns=server, batch=server_cmds)
    if ipv6:
        wire6(lab, scen, baseline, exit)
    # Said, not assumed (a host may make new namespaces inherit its own settings): the
    # only way across the wan is a relay, and the server routes nothing.
    for node in (wan, server):
        proc.run_in_ns(node, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        if Path("/proc/sys/net/ipv6").exists():
            proc.run_in_ns(node, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"])


def wire6(lab: str, scen: Scenario, baseline: str | None, exit: str) -> None:
    """The IPv6 of `--ipv6` (docs/internals.md), on the links wire() made. Static
    addresses without duplicate address detection and no link-local ones: nothing keeps
    changing after the build. The client's ISP gets a default route too, as a dual-stack
    ISP gives one: IPv6 that leaves outside the tunnels reaches the wan (which forwards
    nothing), where a leak test can see it.

    The links to the far side (from the exit, or each separate exit) do get link-local
    addresses, static and without detection like the rest: a stale neighbour entry is
    confirmed by a solicitation from an address of the link, the link-local one when the
    packet's source is not on it (the far end answers from its loopback's address, a
    router forwards others' packets), and with none the kernel sends nothing
    (``ndisc_send_ns``). Without
    them the far end's and the exit's entries for each other went PROBE -> FAILED every
    half a minute or so, and IPv6 through the exit stopped for seconds at a time (10 of
    24 three-second streams got nothing back; docs/multipath.md)."""
    far = ("fe80::1/64", "fe80::2/64")  # the node's end, the far side's end
    client, wan, server = netns(lab, "client"), netns(lab, "wan"), netns(lab, "server")
    proc.ip("-6", ns=client, batch=["addr add 2001:2::2/64 dev wan0 nodad",
                                    f"route add default via {CLIENT_WAN6}"])
    wan_cmds = [f"addr add {CLIENT_WAN6}/64 dev cl0 nodad"]
    if baseline:
        proc.ip("-6", ns=netns(lab, "base"), batch=["addr add 2001:2:0:1::2/64 dev wan0 nodad"])
        wan_cmds.append("addr add 2001:2:0:1::1/64 dev bs0 nodad")
    server_cmds = [f"addr add {SERVER_ADDRESS6}/128 dev lo"]
    if exit == SHARED:
        proc.ip("-6", ns=netns(lab, "exit"), batch=[
            f"addr add 2001:2:0:99::1/64 dev {UPLINK} nodad",
            f"addr add {far[0]} dev {UPLINK} nodad",
            "route add default via 2001:2:0:99::2"])
        server_cmds += ["addr add 2001:2:0:99::2/64 dev exit nodad",
                        f"addr add {far[1]} dev exit nodad"]
    else:
        for i, path in enumerate(scen.paths):
            proc.ip("-6", ns=netns(lab, f"gw-{path.name}"), batch=[
                f"addr add 2001:2:0:b{i}::1/64 dev {UPLINK} nodad",
                f"addr add {far[0]} dev {UPLINK} nodad",
                f"route add {SERVER_ADDRESS6}/128 via 2001:2:0:b{i}::2"])
            server_cmds += [f"addr add 2001:2:0:b{i}::2/64 dev gw-{path.name} nodad",
                            f"addr add {far[1]} dev gw-{path.name} nodad"]
    proc.ip("-6", ns=wan, batch=wan_cmds)
    proc.ip("-6", ns=server, batch=server_cmds)


def _logdir(info: LabInfo) -> Path:
    return info.runtime_dir / "log"


def _start(info: LabInfo, node: str, argv: list[str], log_name: str, ready: Callable[[], bool],
           what: str, env: dict[str, str] | None = None) -> None:
    """Start a part in ``node`` and wait until ``ready``; if it dies first, say why at once."""
    log = _logdir(info) / log_name
    child = proc.start_daemon(netns(info.name, node), argv, log, env=env or python_env())

    def up() -> bool:
        if ready():
            return True
        if child.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            # The build removes the lab (and this log) on failure: quote the log here.
            raise BraidError(f"{what} exited (status {child.returncode}) before it was ready; "
                             "its log ends: " + " | ".join(tail),
                             "fix what the log says, then build the lab again")
        return False

    wait_until(up, START_TIMEOUT, what)


def _start_wg(info: LabInfo, node: str, iface: str) -> None:
    # A stale UAPI socket of a crashed earlier lab of the same name would fool the wait.
    with contextlib.suppress(FileNotFoundError):
        if not uapi_answers(iface):
            uapi_path(iface).unlink()
    _start(info, node, ["wireguard-go", "-f", iface], f"{iface}.log",
           lambda: uapi_answers(iface), f"wireguard-go {iface}",
           env={**os.environ, "LOG_LEVEL": "error"})


def start_baseline(info: LabInfo, gw: LabGateway, base_priv: str,
                   addresses: tuple[str, ...]) -> None:
    """A plain WireGuard tunnel with a default route, as wg-quick would set it up."""
    iface, ns = baseline_iface(info.name), netns(info.name, "base")
    _start_wg(info, "base", iface)
    configure(iface, base_priv, None, [UapiPeer(
        gw.public_key,
        ("0.0.0.0/0", "::/0"), endpoint=f"{BASE_WAN}:{RELAY_BASE_PORT + gw.index}",
        persistent_keepalive=25,
    )])
    proc.ip(ns=ns, batch=[
        f"addr add {addresses[0]} dev {iface}",
        f"link set {iface} mtu 1420 up",
        # The endpoint stays on the underlay; everything else goes into the tunnel.
        f"route add {BASE_WAN}/32 dev wan0",
        f"route add default dev {iface}",
    ])
    if len(addresses) > 1:
        proc.ip("-6", ns=ns, batch=[f"addr add {addresses[1]} dev {iface} nodad",
                                    f"route add default dev {iface}"])


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def start_relay(info: LabInfo, scen: Scenario) -> None:
    from app.lab.relay_client import relay_answers
    from app.lab.relay_config import relay_config

    config = info.runtime_dir / "relay.json"
    config.write_text(json.dumps(relay_config(info, scen)))
    _start(info, "wan", python_argv("app.lab.relay", str(config)), "relay.log",
           lambda: relay_answers(info.relay_socket), "the lab's relay")


def start_servers(info: LabInfo) -> None:
    ready = info.runtime_dir / "servers.ready"
    # The far end speaks MPTCP (app/lab/servers.py) and takes a subflow per tunnel of
    # the client: the kernel's default (2 beyond the first) would refuse a third.
    # A sysctl-like knob of the server's namespace only.
    if Path("/proc/sys/net/mptcp").exists():
        proc.ip("mptcp", "limits", "set", "subflows", str(MPTCP_SERVER_SUBFLOWS),
                "add_addr_accepted", "0", ns=netns(info.name, "server"))
    _start(info, "server", python_argv("app.lab.servers", "--ready-file", str(ready),
                                       "--dns-counts", str(dns_counts(info, "far"))),
           "servers.log", ready.exists, "the lab's server apps")


def dns_counts(info: LabInfo, zone: str) -> Path:
    """Where the lab's resolver ``zone`` ("far": the gateways', "isp": the ISP's) counts
    the queries it got (app/lab/dnsserver.py)."""
    return info.runtime_dir / f"dns-{zone}.json"


def client_resolv_conf(lab: str) -> Path:
    """The client namespace's own resolv.conf: what every process started there with
    `ip netns exec` (the lab's helper too) sees as /etc/resolv.conf."""
    return NETNS_ETC / netns(lab, "client") / "resolv.conf"


def write_client_resolv_conf(lab: str) -> None:
    """As the ISP's DHCP would set it: its resolver on the client's link. Written before
    anything runs in the client namespace (a bind mount takes the file it finds)."""
    path = client_resolv_conf(lab)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_text(f"# the lab's ISP (DHCP)\nnameserver {CLIENT_WAN}\n")
    os.chmod(path, 0o644)


def remove_client_resolv_conf(lab: str) -> None:
    shutil.rmtree(client_resolv_conf(lab).parent, ignore_errors=True)


def start_isp_resolver(info: LabInfo) -> None:
    ready = info.runtime_dir / "dns-isp.ready"
    _start(info, "wan", python_argv("app.lab.dnsserver", "--zone", "isp", "--listen",
                                    CLIENT_WAN, "--counts", str(dns_counts(info, "isp")),
                                    "--ready-file", str(ready)),
           "dns-isp.log", ready.exists, "the lab's ISP resolver")


def start_helper(info: LabInfo, grace: int) -> None:
    helper = shutil.which("braid-helper")
    argv = [helper] if helper else python_argv("app.helper.main")
    _start(info, "client", [
        *argv, "--socket", str(info.helper_socket),
        "--state-dir", str(info.runtime_dir / "helper"),
        "--grace-seconds", str(grace),
        # The namespace's own file, named outright: never the host's /etc/resolv.conf.
        "--resolv-conf", str(client_resolv_conf(info.name)),
    ], "helper.log", lambda: helper_answers(info.helper_socket), "the lab's braid-helper")


def helper_answers(sock: Path) -> bool:
    import asyncio

    from app.core.helper_client import HelperClient  # owned by HELPER

    async def hello() -> bool:
        client = HelperClient(sock)
        try:
            await client.hello()
            return True
        except (BraidError, OSError):
            return False
        finally:
            await client.close()

    return sock.exists() and asyncio.run(hello())
