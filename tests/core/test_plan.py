"""plan: profile + decisions -> the helper's desired state, and what the helper would
make of it (validated by the helper's own parser)."""

from __future__ import annotations

import base64

import pytest

from app.core.errors import BraidError
from app.core.plan import (
    CLOSED_MARK,
    MAX_PATHS,
    PathSpec,
    build_state,
    path_mark,
    without_flush,
)
from app.wire.state import (
    BYPASS_MARK,
    MARK_MASK,
    MAX_BULK_AFTER_BYTES,
    GuardState,
    parse_state,
)

KEY = base64.b64encode(bytes(range(32))).decode()


def spec(i: int, name: str) -> PathSpec:
    return PathSpec(
        name=name, index=i, interface=f"br-t-{name}", private_key=KEY, preshared_key=None,
        addresses=(f"198.19.{i}.2/32",), mtu=1380, listen_port=None, peer_public_key=KEY,
        endpoint=f"198.18.0.1:{51000 + i}", allowed_ips=("0.0.0.0/0",),
        persistent_keepalive=25,
    )


PATHS = [spec(0, "hk"), spec(1, "tyo"), spec(2, "sgp")]


def rules_of(state_doc: dict[str, object]) -> list[tuple[object, ...]]:
    return [(r["priority"], r["src"], r["fwmark"], r["action"], r["table"])  # type: ignore[index]
            for r in state_doc["rules"]]  # type: ignore[attr-defined]


def test_state_layout_follows_the_address_plan() -> None:
    state = build_state(PATHS, {"default": "tyo"}, usable={"hk", "tyo", "sgp"})
    doc = state.to_json()
    assert parse_state(doc) == state  # the helper accepts it as is
    assert [t["name"] for t in doc["tunnels"]] == ["br-t-hk", "br-t-tyo", "br-t-sgp"]
    assert all(t["fwmark"] == BYPASS_MARK for t in doc["tunnels"])
    assert [t["id"] for t in doc["tables"]] == [52000, 52001, 52002]
    assert doc["tables"][1]["routes"] == [
        {"dst": "0.0.0.0/0", "nexthops": [{"dev": "br-t-tyo", "weight": 1}]}]
    rules = rules_of(doc)
    assert (5201, "198.19.1.2/32", None, "lookup", 52001) in rules
    assert (5252, None, path_mark(1), "lookup", 52001) in rules
    assert (5253, None, path_mark(1), "unreachable", None) in rules
    assert (5299, None, CLOSED_MARK, "unreachable", None) in rules
    assert all(r["fwmask"] in (None, MARK_MASK) for r in doc["rules"])
    assert doc["marking"]["classes"] == [{"name": "default", "mark": 0x02000000}]
    assert doc["marking"]["masquerade"] is True and doc["marking"]["flush_marks"] == []


def test_dead_path_keeps_only_its_unreachable_rule_and_is_flushed() -> None:
    state = build_state(PATHS, {"default": "sgp"}, usable={"sgp", "tyo"}, flush={"hk"})
    rules = rules_of(state.to_json())
    assert (5250, None, path_mark(0), "lookup", 52000) not in rules
    assert (5251, None, path_mark(0), "unreachable", None) in rules
    assert (5200, "198.19.0.2/32", None, "lookup", 52000) in rules  # probes still go
    assert state.marking is not None and state.marking.flush_marks == (path_mark(0),)
    assert parse_state(state.to_json()) == state


def test_fail_closed_uses_the_closed_mark() -> None:
    state = build_state(PATHS, {"default": None}, usable=set())
    doc = state.to_json()
    assert doc["marking"]["classes"] == [{"name": "default", "mark": CLOSED_MARK}]
    assert [r for r in rules_of(doc) if r[3] == "lookup" and r[2] is not None] == []
    restored = build_state(PATHS, {"default": "hk"}, usable={"hk"}, flush={"tyo", "sgp"},
                           flush_closed=True)
    assert restored.marking is not None
    assert set(restored.marking.flush_marks) == {path_mark(1), path_mark(2), CLOSED_MARK}


def test_plans_compare_without_their_flush_list() -> None:
    a = build_state(PATHS, {"default": "hk"}, usable={"hk"}, flush={"tyo"})
    b = build_state(PATHS, {"default": "hk"}, usable={"hk"})
    assert a != b and without_flush(a) == b == without_flush(b)


def test_profile_limits_are_clear_errors() -> None:
    with pytest.raises(BraidError, match="no gateways"):
        build_state([], {}, usable=set())
    many = [spec(i, f"g{i}") for i in range(13)]
    with pytest.raises(BraidError, match="at most 12"):
        build_state(many, {}, usable=set())
    v6only = PathSpec(**{**PATHS[0].__dict__, "addresses": ("fd00::2/128",)})
    with pytest.raises(BraidError, match="no IPv4 address"):
        build_state([v6only], {"default": "hk"}, usable={"hk"})


def test_an_address_with_a_prefix_becomes_a_host_address_and_a_route() -> None:
    """`Address = 10.7.0.5/24` (wg-easy, PiVPN): the helper installs one host, and the
    network is a route through that tunnel."""
    wide = PathSpec(**{**spec(0, "hk").__dict__, "addresses": ("10.7.0.5/24", "fd00::5/64")})
    state = build_state([wide], {"default": "hk"}, usable={"hk"})
    assert parse_state(state.to_json()) == state
    assert state.tunnels[0].addresses == ("10.7.0.5/32", "fd00::5/128")
    assert [r.dst for r in state.tables[0].routes] == ["0.0.0.0/0", "10.7.0.0/24", "fd00::/64"]


def test_a_shared_exit_profile_probes_by_destination_and_is_not_masqueraded() -> None:
    """Every tunnel has the same inner address: a path's probes are routed to it by
    their destination, its gateway's own probe address."""
    shared = [PathSpec(**{**p.__dict__, "addresses": ("10.77.0.2/32",),
                          "probe_target": f"10.77.{10 + p.index}.1"}) for p in PATHS]
    state = build_state(shared, {"default": "hk"}, usable={"hk"}, shared_exit=True)
    assert parse_state(state.to_json()) == state
    assert state.marking is not None and state.marking.masquerade is False
    probes = [(r.priority, r.src, r.dst, r.table) for r in state.rules if r.priority < 5250]
    assert probes == [(5200, None, "10.77.10.1/32", 52000), (5201, None, "10.77.11.1/32", 52001),
                      (5202, None, "10.77.12.1/32", 52002)]
    same = [PathSpec(**{**p.__dict__, "probe_target": "10.77.0.1"}) for p in shared]
    with pytest.raises(BraidError, match=r"would all be probed at 10\.77\.0\.1") as err:
        build_state(same, {"default": "hk"}, usable={"hk"}, shared_exit=True)
    assert "probe" in err.value.fix


def test_the_kill_switch_rides_along() -> None:
    guard = GuardState(("192.168.1.0/24",), "br-t-hk")
    state = build_state(PATHS, {"default": "hk"}, usable={"hk"}, guard=guard, flush={"tyo"})
    assert parse_state(state.to_json()) == state
    assert without_flush(state).guard == guard


def test_classes_get_their_paths_marks_and_the_volume_threshold() -> None:
    state = build_state(PATHS, {"realtime": "hk", "bulk": "tyo", "default": "hk"},
                        usable={"hk", "tyo"}, bulk_after_mb=50.0)
    assert state.marking is not None
    marks = {c.name: c.mark for c in state.marking.classes}
    assert marks == {"realtime": PATHS[0].mark, "bulk": PATHS[1].mark,
                     "default": PATHS[0].mark}
    assert state.marking.bulk_after_bytes == 50_000_000
    # The bypass class's mark is the helper's: no path ever gets it.
    assert 0x0D000000 not in {path_mark(i) for i in range(MAX_PATHS)} | {CLOSED_MARK}
    assert build_state(PATHS, {"default": "hk"}, usable={"hk"}).marking.bulk_after_bytes \
        is None  # type: ignore[union-attr]
    huge = build_state(PATHS, {"default": "hk"}, usable={"hk"}, bulk_after_mb=1e12)
    assert huge.marking.bulk_after_bytes == MAX_BULK_AFTER_BYTES  # type: ignore[union-attr]
    assert parse_state(huge.to_json()) == huge  # the helper takes what the plan sends


def split(p: PathSpec, *prefixes: str) -> PathSpec:
    return PathSpec(**{**p.__dict__, "allowed_ips": prefixes})


def test_a_split_gateway_gets_only_its_prefixes_and_the_rest_takes_the_full_ones() -> None:
    """A corporate file with AllowedIPs = 10.20.0.0/16: that prefix goes to it, whatever
    the class; everything else rides the classes' full gateways."""
    corp = split(PATHS[2], "10.20.0.0/16", "fd20::/48")
    paths = [PATHS[0], PATHS[1], corp]
    state = build_state(paths, {"default": "hk"}, usable={"hk", "tyo", "sgp"})
    assert parse_state(state.to_json()) == state
    assert [r.dst for r in state.tables[2].routes] == ["10.20.0.0/16"]  # no IPv6 address
    assert [r.dst for r in state.tables[0].routes] == ["0.0.0.0/0"]
    assert (5232, "10.20.0.0/16", "lookup", 52002) in [
        (r.priority, r.dst, r.action, r.table) for r in state.rules]
    assert state.marking is not None and state.guard is None
    down = build_state(paths, {"default": "hk"}, usable={"hk", "tyo"})
    assert (5232, "10.20.0.0/16", "unreachable") in [
        (r.priority, r.dst, r.action) for r in down.rules]


def test_only_split_gateways_leave_the_rest_outside_on_purpose() -> None:
    corp = split(PATHS[0], "10.20.0.0/16")
    guard = GuardState((), "br-t-hk")
    state = build_state([corp], {}, usable={"hk"}, guard=guard)
    assert parse_state(state.to_json()) == state
    assert state.marking is None and state.guard is None


def test_ipv6_goes_into_a_tunnel_only_where_the_gateway_gives_it() -> None:
    v6 = PathSpec(**{**PATHS[0].__dict__, "addresses": ("198.19.0.2/32", "fd19::2/128"),
                     "allowed_ips": ("0.0.0.0/0", "::/0")})
    v4 = PathSpec(**{**PATHS[1].__dict__, "allowed_ips": ("0.0.0.0/0", "::/0")})
    state = build_state([v6, v4], {"default": "hk"}, usable={"hk", "tyo"})
    assert [r.dst for r in state.tables[0].routes] == ["0.0.0.0/0", "::/0"]
    assert [r.dst for r in state.tables[1].routes] == ["0.0.0.0/0"]  # no IPv6 address


def test_mptcp_endpoints_follow_the_healthy_paths() -> None:
    """An endpoint per healthy path (its subflow address 192.0.0.224 + i), a rule per
    path from that address into its table whether healthy or not, and room for a subflow
    per endpoint: what the helper accepts as is (docs/multipath.md, "MPTCP")."""
    shared = [PathSpec(**{**p.__dict__, "addresses": ("10.77.0.2/32",),
                          "probe_target": f"10.77.{10 + p.index}.1"}) for p in PATHS]
    state = build_state(shared, {"default": "hk"}, usable={"hk", "sgp"}, shared_exit=True,
                        mptcp={"hk", "sgp"})
    assert parse_state(state.to_json()) == state
    assert state.mptcp is not None
    assert [(e.id, e.dev, e.address) for e in state.mptcp.endpoints] == [
        (200, "br-t-hk", "192.0.0.224"), (202, "br-t-sgp", "192.0.0.226")]
    assert (state.mptcp.subflows, state.mptcp.add_addr_accepted) == (2, 0)
    into = [(r.priority, r.src, r.table) for r in state.rules if 5215 <= r.priority < 5230]
    assert into == [(5215, "192.0.0.224/32", 52000), (5216, "192.0.0.225/32", 52001),
                    (5217, "192.0.0.226/32", 52002)]
    assert build_state(shared, {"default": "hk"}, usable={"hk"}).mptcp is None  # not asked
