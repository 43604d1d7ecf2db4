"""MPTCP endpoints (docs/multipath.md, "MPTCP"): the state's field is validated with field
paths; the helper puts an endpoint per tunnel into the kernel, with its local address and
the translation to the tunnel's address, keeps them there, takes them away with the
field, and leaves none behind a crash (--cleanup, a restart)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.core.helper_client import HelperStatus
from app.lab.topology import LabInfo
from app.wire.state import StateError, parse_state
from tests.helper.conftest import (
    Helper,
    all_handshaken,
    braid_leftovers,
    lab_state,
    mptcp_endpoints,
    ns_run,
)
from tests.helper.test_helper_state import good
from tests.util import wait_until

LIMITS_BEFORE = ("subflows", "2", "add_addr_accepted", "0")


def with_mptcp(doc: dict[str, Any], tunnels: list[str] | None = None) -> dict[str, Any]:
    """``doc`` with an MPTCP endpoint on each of ``tunnels`` (all: None), the engine's
    way: address 192.0.0.224 + i, a rule from it into tunnel i's table."""
    doc = copy.deepcopy(doc)
    endpoints = []
    for i, (tunnel, table) in enumerate(zip(doc["tunnels"], doc["tables"], strict=True)):
        address = f"192.0.0.{224 + i}"
        doc["rules"].append({"priority": 5215 + i, "src": f"{address}/32", "fwmark": None,
                             "fwmask": None, "action": "lookup", "table": table["id"]})
        if tunnels is None or tunnel["name"] in tunnels:
            endpoints.append({"id": 200 + i, "dev": tunnel["name"], "address": address})
    doc["mptcp"] = {"endpoints": endpoints, "subflows": len(endpoints),
                    "add_addr_accepted": 0}
    return doc


def _good() -> dict[str, Any]:
    doc = good()
    doc["tunnels"] = doc["tunnels"][:1]
    doc["tables"] = [{"id": 52000, "routes": [{"dst": "0.0.0.0/0", "nexthops": [
        {"dev": doc["tunnels"][0]["name"], "weight": 1}]}]}]
    doc["rules"] = []
    doc.pop("copies", None)
    return with_mptcp(doc)


def test_mptcp_state_round_trips_and_is_left_out_when_absent() -> None:
    state = parse_state(_good())
    assert state.mptcp is not None and state.mptcp.endpoints[0].address == "192.0.0.224"
    assert parse_state(state.to_json()) == state
    plain = _good()
    del plain["mptcp"]
    assert "mptcp" not in parse_state(plain).to_json()  # an older helper still takes it


@pytest.mark.parametrize(("change", "path"), [
    (lambda d: d["mptcp"]["endpoints"][0].update(id=5), "mptcp.endpoints[0].id"),
    (lambda d: d["mptcp"]["endpoints"][0].update(dev="br-lab-xx"), "mptcp.endpoints[0].dev"),
    (lambda d: d["mptcp"]["endpoints"][0].update(address="10.0.0.1"),
     "mptcp.endpoints[0].address"),
    (lambda d: d["mptcp"]["endpoints"][0].update(address="fe80::1"),
     "mptcp.endpoints[0].address"),
    (lambda d: d["rules"].pop(), "mptcp.endpoints[0].address"),  # no rule into the tunnel
    (lambda d: d["mptcp"].update(subflows=9), "mptcp.subflows"),
    (lambda d: d["mptcp"].update(add_addr_accepted=-1), "mptcp.add_addr_accepted"),
    (lambda d: d["mptcp"].update(extra=1), "mptcp.extra"),
    (lambda d: d["mptcp"]["endpoints"].append(dict(d["mptcp"]["endpoints"][0])),
     "mptcp.endpoints[1]"),
    (lambda d: d["tunnels"][0]["addresses"].append("192.0.0.230/32"),
     "tunnels[0].addresses[1]"),  # the helper's own block
])
def test_bad_mptcp_field_is_named(change: Any, path: str) -> None:
    doc = _good()
    change(doc)
    with pytest.raises(StateError) as err:
        parse_state(doc)
    assert err.value.path == path, err.value


def _limits(ns: str) -> str:
    return ns_run(ns, "ip", "mptcp", "limits", "show").strip()


def _held(helper: Helper, lab: LabInfo, names: list[str]) -> bool:
    shown = "\n".join(mptcp_endpoints(helper.ns))
    addrs = ns_run(helper.ns, "ip", "-4", "addr", "show")
    nat = ns_run(helper.ns, "nft", "list", "tables")
    return (all(f"dev {n}" in shown for n in names) and len(mptcp_endpoints(helper.ns)) ==
            len(names) and all(f"192.0.0.{224 + g.index}/32 scope link" in addrs
                               for g in lab.gateways if g.client_interface in names)
            and "table ip braid_mptcp" in nat)


def test_endpoints_are_reconciled_repaired_and_removed(helper: Helper) -> None:
    lab, ns = helper.lab, helper.ns
    ns_run(ns, "ip", "mptcp", "limits", "set", *LIMITS_BEFORE)
    before = _limits(ns)
    client = helper.client()
    names = [g.client_interface for g in lab.gateways]
    client.apply(with_mptcp(lab_state(lab)))
    wait_until(lambda: all_handshaken(client.status(), names), 15)
    assert _held(helper, lab, names), mptcp_endpoints(ns)
    assert _limits(ns).split()[-1] == str(len(names))  # "... subflows 3"
    translated = ns_run(ns, "nft", "list", "table", "ip", "braid_mptcp")
    assert f"ip saddr 192.0.0.224 snat to {lab.gateways[0].client_address.split('/')[0]}" \
        in translated, translated

    # A path dies: the engine leaves its endpoint out; the others stay as they were.
    hk = lab.gateways[0].client_interface
    client.apply(with_mptcp(lab_state(lab), names[1:]))
    assert _held(helper, lab, names[1:])
    assert "192.0.0.224/32" not in ns_run(ns, "ip", "addr", "show", "dev", hk)
    client.apply(with_mptcp(lab_state(lab)))  # and recovers
    assert _held(helper, lab, names)

    # Drift: someone removes an endpoint and an address; both come back.
    ns_run(ns, "ip", "mptcp", "endpoint", "delete", "id", "201")
    ns_run(ns, "ip", "addr", "del", "192.0.0.226/32", "dev", names[2])
    wait_until(lambda: _held(helper, lab, names), 10,
               message=f"MPTCP drift not repaired: {mptcp_endpoints(ns)}")

    # A state without MPTCP: endpoints, addresses and table go, the limits are as before.
    client.apply(lab_state(lab))
    assert mptcp_endpoints(ns) == []
    assert "192.0.0." not in ns_run(ns, "ip", "-4", "addr", "show")
    assert "braid_mptcp" not in ns_run(ns, "nft", "list", "tables")
    assert _limits(ns) == before


def test_a_killed_helper_leaves_no_endpoint_behind(helper: Helper) -> None:
    lab, ns = helper.lab, helper.ns
    ns_run(ns, "ip", "mptcp", "limits", "set", *LIMITS_BEFORE)
    before = _limits(ns)
    client = helper.client()
    names = [g.client_interface for g in lab.gateways]
    client.apply(with_mptcp(lab_state(lab)))
    assert _held(helper, lab, names)
    helper.kill9()
    done = helper.cleanup()
    assert done.returncode == 0, done.stderr
    assert braid_leftovers(ns) == []
    assert _limits(ns) == before, "the journaled limits were not restored"

    # A restarted helper finds an earlier run's endpoints and removes them too.
    helper.start()
    client = helper.client()
    client.apply(with_mptcp(lab_state(lab)))
    helper.kill9()
    helper.start()
    status: HelperStatus = helper.client().status()
    assert status.tunnels == ()
    assert mptcp_endpoints(ns) == [] and _limits(ns) == before
