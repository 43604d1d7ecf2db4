"""Drift: what someone else deletes or changes among the helper's objects comes back by
itself, and `status` tells what the kernel holds, not what the helper remembers.
(The guard's own layers under drift: test_helper_guard.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helper.conftest import (
    Helper,
    all_handshaken,
    lab_state,
    ns_run,
    raw_request,
)
from tests.util import wait_until


def test_deleted_objects_come_back(helper: Helper) -> None:
    lab = helper.lab
    client = helper.client()
    state = lab_state(lab)  # marking, no guard: here a lost table is a plaintext leak
    client.apply(state)
    names = [g.client_interface for g in lab.gateways]
    wait_until(lambda: all_handshaken(client.status(), names), 15)
    before_rules = ns_run(helper.ns, "ip", "rule")
    before_routes = ns_run(helper.ns, "ip", "route", "show", "table", "all")

    ns_run(helper.ns, "nft", "delete", "table", "inet", "braid")
    wait_until(lambda: "table inet braid" in ns_run(helper.ns, "nft", "list", "tables"), 10,
               message="the marking table was not put back")
    ns_run(helper.ns, "ip", "route", "del", "default", "table", "52002")
    ns_run(helper.ns, "ip", "rule", "del", "priority", "5250")
    ns_run(helper.ns, "ip", "rule", "add", "priority", "5260", "from", "10.9.9.9",
           "lookup", "52001")  # a stranger in Braid's range
    wait_until(lambda: ns_run(helper.ns, "ip", "rule") == before_rules, 10,
               message="Braid's rules were not put back as they were")
    wait_until(lambda: ns_run(helper.ns, "ip", "route", "show", "table", "all")
               .count("table 5200") == before_routes.count("table 5200"), 10,
               message="the deleted route was not put back")

    tyo = lab.gateways[1]
    ns_run(helper.ns, "ip", "link", "del", tyo.client_interface)
    wait_until(lambda: (t := client.status().tunnel(tyo.client_interface)) is not None
               and t.up and t.handshake_age_s is not None
               and f"dev {tyo.client_interface}" in ns_run(
                   helper.ns, "ip", "route", "show", "table", "52002"), 20,
               message="the deleted tunnel did not come back with its route")
    assert "198.19.1.2/32" in ns_run(helper.ns, "ip", "addr", "show", "dev",
                                     tyo.client_interface)
    st = client.status()
    assert st.marking and st.tunnel(tyo.client_interface).restarts >= 1  # type: ignore[union-attr]
    log = helper.log.read_text()
    # A deleted link either leaves its wireguard-go running (drift: "link ... is gone")
    # or takes it down with it (the supervisor's restart): both bring it back.
    assert "nft table inet braid" in log, log
    assert (f"link {tyo.client_interface} is gone" in log
            or f"{tyo.client_interface}: wireguard-go" in log), log


def test_a_device_configuration_changed_over_uapi_is_set_again(helper: Helper) -> None:
    """No event announces a UAPI change: the timer finds it."""
    lab = helper.lab
    client = helper.client()
    client.apply(lab_state(lab, ("hk",)))
    hk = lab.gateways[0]
    wait_until(lambda: all_handshaken(client.status(), [hk.client_interface]), 15)
    ns_run(helper.ns, "wg", "set", hk.client_interface, "fwmark", "0", "peer", hk.public_key,
           "allowed-ips", "10.0.0.0/8")
    wait_until(lambda: "allowed ips: 0.0.0.0/0" in ns_run(helper.ns, "wg", "show",
                                                           hk.client_interface)
               and "fwmark: 0xf000000" in ns_run(helper.ns, "wg", "show", hk.client_interface),
               15, message="the device's configuration was not set again")


_SCRIPT = r"""
import asyncio, json, subprocess, sys
from pathlib import Path
from app.helper import reconcile
from app.wire.state import parse_state

async def main() -> None:
    state = parse_state(json.loads(sys.stdin.readline()))
    r = reconcile.Reconciler("userspace", Path(sys.argv[1]))  # no watch: nothing repairs
    await r.start()
    await r.apply(state)
    out = {"before": (await r.status()).to_json()}
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    subprocess.run(["ip", "rule", "del", "priority", "5298"], check=True)
    out["after"] = (await r.status()).to_json()
    out["drift"] = await r.verify()
    out["repaired"] = (await r.status()).to_json()
    await r.down()
    await r.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def own_reconciler(helper: Helper, tmp_path: Path, script: str,
                   state: dict[str, Any]) -> dict[str, Any]:
    """``script`` run with ``state`` in the helper's namespace, by a Reconciler of its
    own without the event watch (so nothing repairs but what it asks): its JSON out.
    The test's helper is stopped meanwhile and started again after."""
    helper.stop()
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", helper.ns, sys.executable, "-c", script,
             str(tmp_path / "rstate")], input=json.dumps(state) + "\n", capture_output=True,
            text=True, timeout=60, check=False, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out: dict[str, Any] = json.loads(done.stdout)
    finally:
        helper.start()
    return out


def test_status_tells_the_kernel_not_the_helpers_memory(helper: Helper, tmp_path: Path,
                                                        ) -> None:
    lab = helper.lab
    state = lab_state(lab, ("hk",), guard={"allow": ["192.0.2.0/24"],
                                           "via": lab.gateways[0].client_interface})
    out = own_reconciler(helper, tmp_path, _SCRIPT, state)
    before, after, repaired = out["before"], out["after"], out["repaired"]
    assert before["marking"] and before["guard"]["active"]
    assert not after["marking"]
    g = after["guard"]
    assert not g["active"] and not g["nft"] and not g["routing"], g
    assert "nft table inet braid" in out["drift"] and any("rules" in d for d in out["drift"])
    assert repaired["marking"] and repaired["guard"]["active"]
    assert raw_request(helper.socket, b'{"v": 1, "verb": "status"}\n') is not None


_REPAIR_SCRIPT = r"""
import asyncio, json, subprocess, sys
from pathlib import Path
from app.helper import reconcile
from app.wire.state import parse_state

def entries() -> str:
    return subprocess.run(["conntrack", "-L", "-p", "udp", "--dport", "40999"],
                          capture_output=True, text=True).stdout

async def main() -> None:
    state = parse_state(json.loads(sys.stdin.readline()))
    r = reconcile.Reconciler("userspace", Path(sys.argv[1]))  # no watch: nothing repairs
    await r.start()
    subprocess.run(["conntrack", "-I", "-p", "udp", "-s", "10.1.1.1", "-d", "10.2.2.2",
                    "--sport", "1000", "--dport", "40999", "--timeout", "120",
                    "--mark", str(0x01000000)], check=True, capture_output=True)
    await r.apply(state)
    out = {"flushed": "40999" not in entries()}
    out["at_rest"] = await r.verify()
    subprocess.run(["conntrack", "-I", "-p", "udp", "-s", "10.1.1.1", "-d", "10.2.2.2",
                    "--sport", "1001", "--dport", "40999", "--timeout", "120",
                    "--mark", str(0x01000000)], check=True, capture_output=True)
    subprocess.run(["ip", "route", "del", "default", "table", "52001"], check=True)
    out["drift"] = await r.verify()
    out["kept"] = "sport=1001" in entries()
    out["routes6"] = subprocess.run(["ip", "-6", "route", "show", "table", "52099"],
                                    capture_output=True, text=True).stdout
    await r.down()
    await r.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_a_repair_neither_sees_drift_at_rest_nor_repeats_the_flush(helper: Helper,
                                                                   tmp_path: Path) -> None:
    """With the kill switch through an IPv6-capable tunnel, a check finds nothing (its
    IPv6 default's metric used to differ from the kernel's, and every repair removed
    the route: IPv6 through Braid stopped seconds after connecting). And a repair does
    not flush again the flows the state's apply flushed: only that apply does."""
    lab = helper.lab
    hk = lab.gateways[0]
    state = lab_state(lab, ("hk",), guard={"allow": ["192.0.2.0/24"],
                                           "via": hk.client_interface})
    state["tunnels"][0]["addresses"].append("fd00:19::2/128")
    state["tables"][0]["routes"].append(
        {"dst": "::/0", "nexthops": [{"dev": hk.client_interface, "weight": 1}]})
    state["marking"]["flush_marks"] = [0x01000000]
    out = own_reconciler(helper, tmp_path, _REPAIR_SCRIPT, state)
    assert out["flushed"], out  # the apply flushed its marks
    assert f"default dev {hk.client_interface}" in out["routes6"], out
    assert out["at_rest"] == [], out
    assert out["drift"] == ["routes in Braid's tables"], out
    assert out["kept"], out  # the repair put the route back and flushed nothing
