"""The lab's namespaces, links, gateways and processes: build, load, destroy.

Everything is named after the lab (docs/internals.md, "Lab naming and address plan"), so
two labs run side by side and `destroy` finds all of a lab again after a crash, by name,
without any record of what was built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.core.errors import BraidError
from app.lab import nodes, proc, roles
from app.lab.model import (
    CLIENT_WAN,
    EXITS,
    PROBE_BASE_PORT,
    RELAY_BASE_PORT,
    RUN_ROOT,
    SEPARATE,
    SERVER_ADDRESS,
    SHARED,
    WG_PORT,
    LabGateway,
    LabInfo,
    baseline_iface,
    check_lab_name,
    client_iface,
    gateway_iface,
    lab_names,
    lab_namespaces,
    netns,
    runtime_dir,
)
from app.lab.nodes import python_argv, python_env
from app.lab.relay_client import relay_request
from app.lab.scenario import Scenario, load_scenario
from app.lab.wgpeer import uapi_answers, uapi_path
from app.node.describe import client_tunnels
from app.node.keys import genkey, pubkey

# The contract (docs/internals.md, Lab) is this module's: its names stay importable here.
__all__ = [
    "CLIENT_WAN", "PROBE_BASE_PORT", "RELAY_BASE_PORT", "RUN_ROOT", "SERVER_ADDRESS",
    "WG_PORT", "LabGateway", "LabInfo", "baseline_iface", "build", "check_lab_name",
    "client_iface", "destroy", "gateway_iface", "info_json", "lab_names", "load", "netns",
    "python_argv", "python_env", "run_in", "run_json", "runtime_dir",
]


# --- build -------------------------------------------------------------------------


def build(
    lab: str,
    scenario: str | Path | Scenario = "clean",
    *,
    start_helper: bool = True,
    write_profile: bool = True,
    baseline: str | None = None,
    helper_grace_seconds: int = 10,
    exit: str = SEPARATE,
    ipv6: bool = False,
) -> LabInfo:
    """Build lab ``lab`` on ``scenario``; on any failure, remove what was built and raise.

    ``exit``: "shared" (the gateways carry the client's one address to one exit, the only
    NAT) or "separate" (each gateway its own exit). The CLI's default is shared; this
    default stays separate until the engine drives shared-exit profiles. ``ipv6``: the
    client's ISP, the tunnels and the far side speak IPv6 too (docs/lab.md, "IPv6").
    """
    check_lab_name(lab)
    if exit not in EXITS:
        raise BraidError(f"--exit {exit!r} is not a topology", f"use {' or '.join(EXITS)}")
    scen = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    proc.require_root()
    if baseline is not None:
        scen.path(baseline)  # BraidError naming the paths there are
    if helper_grace_seconds < 0:
        raise BraidError(f"--grace-seconds {helper_grace_seconds} is negative",
                         "give the seconds the helper keeps tunnels after its client left")
    if lab in lab_names():
        raise BraidError(
            f"lab {lab!r} already exists",
            f"use another --name, or remove it first: braid lab down --name {lab}",
        )
    try:
        info = _build(lab, scen, baseline, start_helper, write_profile, helper_grace_seconds,
                      exit, ipv6)
    except BaseException:
        destroy(lab, forget_profile=write_profile)
        raise
    return info


def _build(lab: str, scen: Scenario, baseline: str | None, start_helper: bool,
           write_profile: bool, grace: int, exit: str, ipv6: bool) -> LabInfo:
    rdir = runtime_dir(lab)
    rdir.mkdir(parents=True, exist_ok=False)
    os.chmod(rdir, 0o700)  # holds the client's private keys (keys.json, 0600)
    shared = exit == SHARED
    names = ["client", "wan", "server"] + [f"gw-{p.name}" for p in scen.paths]
    names += ["exit"] if shared else []
    names += ["base"] if baseline else []
    for node in names:
        proc.ip("netns", "add", netns(lab, node))
        nodes.no_link_local(netns(lab, node))
    nodes.write_client_resolv_conf(lab)
    nodes.wire(lab, scen, baseline, exit, ipv6)

    description = roles.lab_nodes(lab, scen, exit, {p.name: genkey() for p in scen.paths},
                                  ipv6)
    client = description.client(roles.CLIENT)
    gateways = tuple(LabGateway(
        name=gw.name, index=i, endpoint=gw.endpoint, public_key=pubkey(gw.private_key),
        client_private_key=client.key(gw.name),
        client_address=description.client_address(client, gw),
        gateway_address=gw.address.split("/")[0],
        client_interface=client_iface(lab, gw.name),
        probe_address=tunnel.probe if shared else None,
        client_address6=tunnel.address6,
    ) for i, (gw, tunnel) in enumerate(zip(
        description.gateways, client_tunnels(description, roles.CLIENT), strict=True)))
    info = LabInfo(name=lab, scenario=scen.name, gateways=gateways,
                   server_address=SERVER_ADDRESS, runtime_dir=rdir,
                   helper_socket=rdir / "helper.sock", baseline=baseline, exit=exit,
                   ipv6=ipv6)

    # The nodes' roles apply in the background while the relay and the server apps start
    # (the roles touch neither). The relay first: the gateways' first handshakes with the
    # exit then cross it at once (a lost one would be retried only 5 s later).
    applying = roles.start_apply(info, description)
    try:
        nodes.start_relay(info, scen)
        nodes.start_servers(info)
        nodes.start_isp_resolver(info)
    finally:
        applying.finish()
    roles.wait_backbones(info, description)
    if baseline:
        base = description.client(roles.BASELINE)
        gw = description.gateway(baseline)
        nodes.start_baseline(info, info.gateway(baseline), base.key(baseline),
                             description.client_addresses(base, gw))
    # The scenario's clock starts now that everything carries traffic.
    info = dataclasses.replace(info, started_at=time.time())
    relay_request(info.relay_socket, {"op": "start", "started_at": info.started_at})
    _save(info)
    if start_helper:
        nodes.start_helper(info, grace)
    if write_profile:
        _write_profile(info, scen)
    return info


def _write_profile(info: LabInfo, scen: Scenario) -> None:
    from app.lab.profile import write_lab_profile

    write_lab_profile(info, scen)


# --- state on disk -----------------------------------------------------------------


def info_json(info: LabInfo) -> dict[str, Any]:
    """LabInfo as JSON, without the client's private keys."""
    doc = asdict(info)
    for g in doc["gateways"]:
        del g["client_private_key"]
    doc["runtime_dir"] = str(info.runtime_dir)
    doc["helper_socket"] = str(info.helper_socket)
    return doc


def _save(info: LabInfo) -> None:
    doc = info_json(info)
    keys = {g.name: g.client_private_key for g in info.gateways}
    keyfile = info.runtime_dir / "keys.json"
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f)
    # lab.json last: its presence means the lab is complete.
    (info.runtime_dir / "lab.json").write_text(json.dumps(doc, indent=1))


def load(lab: str) -> LabInfo:
    rdir = runtime_dir(lab)
    try:
        doc: dict[str, Any] = json.loads((rdir / "lab.json").read_text())
        keys: dict[str, str] = json.loads((rdir / "keys.json").read_text())
    except FileNotFoundError as exc:
        raise BraidError(f"lab {lab!r} is not up", f"start it: braid lab up --name {lab}") from exc
    except ValueError as exc:
        raise BraidError(f"lab {lab!r}: its state in {rdir} is corrupt",
                         f"remove it and start again: braid lab down --name {lab}") from exc
    gateways = tuple(LabGateway(**{**g, "client_private_key": keys[g["name"]]})
                     for g in doc.pop("gateways"))
    return LabInfo(**{**doc, "gateways": gateways, "runtime_dir": Path(doc["runtime_dir"]),
                      "helper_socket": Path(doc["helper_socket"])})


def run_in(lab: str, node: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    ns = netns(lab, node)
    if not proc.ns_exists(ns):
        raise BraidError(
            f"lab {lab!r} has no node {node!r}",
            "nodes are client, wan, server, gw-<path> and (with --baseline) base",
        )
    return proc.in_ns(ns, argv, **popen_kwargs)


def run_json(lab: str, node: str, argv: list[str], timeout: float | None = None) -> Any:
    """Run a lab tool in ``node`` that prints one JSON document; BraidError if it fails."""
    child = run_in(lab, node, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   env=python_env())
    return communicate_json(child, node, argv, timeout)


def communicate_json(child: subprocess.Popen[bytes], node: str, argv: list[str],
                     timeout: float | None = None) -> Any:
    """The one JSON document a lab tool started in ``node`` prints; BraidError if it fails."""
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise BraidError(f"{argv[2] if len(argv) > 2 else argv[0]} in {node} took longer "
                         f"than {timeout:g} s", "try a smaller size or a longer timeout") \
            from None
    if child.returncode != 0:
        raise BraidError(f"{' '.join(argv[1:3])} in {node} failed: "
                         f"{err.decode(errors='replace').strip()[-2000:]}",
                         "see the message above; is the lab still up? braid lab status")
    return json.loads(out)


# --- destroy -----------------------------------------------------------------------


def destroy(lab: str, *, forget_profile: bool = True) -> None:
    """Remove everything of lab ``lab``; idempotent, and works after a crash of anything.

    ``forget_profile`` also deletes the profile `lab-<lab>` (its keys are useless now).
    """
    check_lab_name(lab)
    proc.require_root()
    spaces = lab_namespaces(lab)
    # Every process of the lab runs in one of its namespaces: that is how we find them.
    # The helper goes first and alone, so it can take its tunnels down itself.
    client = netns(lab, "client")
    if client in spaces:
        proc.stop(proc.ns_pids(client))
    proc.stop([pid for ns in spaces for pid in proc.ns_pids(ns)])
    for ns in spaces:
        with contextlib.suppress(BraidError):  # gone meanwhile: that is what we want
            proc.ip("netns", "del", ns)
    _remove_stale_uapi(lab)
    nodes.remove_client_resolv_conf(lab)
    rdir = runtime_dir(lab)
    if rdir.exists():
        shutil.rmtree(rdir)
    if forget_profile:
        from app.lab.profile import forget_lab_profile

        forget_lab_profile(lab)


def _remove_stale_uapi(lab: str) -> None:
    """wireguard-go leaves its socket behind when killed; remove ours, if nobody answers."""
    try:
        socks = list(uapi_path("x").parent.iterdir())
    except FileNotFoundError:
        return
    mine = re.compile(rf"^((bg|bx|br)-{lab}-[a-z0-9-]+|lb-{lab})\.sock$")
    for sock in socks:
        if mine.match(sock.name) and not uapi_answers(sock.name[: -len(".sock")]):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
