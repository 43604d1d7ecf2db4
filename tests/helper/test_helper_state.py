"""Validation of the desired state: every wrong field is named, good states round-trip."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from app.wire.classes import ClassRule, MoveRequest, parse_move, parse_rules
from app.wire.state import CopyState, DesiredState, StateError, parse_state

KEY = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(bytes(range(1, 33))).decode()


def good() -> dict[str, Any]:
    return {
        "persistent": False,
        "tunnels": [
            {
                "name": "br-lab-hk",
                "private_key": KEY,
                "addresses": ["198.19.0.2/32"],
                "mtu": 1380,
                "listen_port": None,
                "fwmark": 0x0F000000,
                "peers": [
                    {
                        "public_key": KEY2,
                        "preshared_key": None,
                        "endpoint": "198.18.0.1:51000",
                        "allowed_ips": ["0.0.0.0/0"],
                        "persistent_keepalive": 25,
                    }
                ],
            }
        ],
        "tables": [
            {
                "id": 52001,
                "routes": [{"dst": "0.0.0.0/0", "nexthops": [{"dev": "br-lab-hk", "weight": 1}]}],
            }
        ],
        "rules": [
            {
                "priority": 5200,
                "src": "198.19.0.2/32",
                "fwmark": None,
                "fwmask": None,
                "action": "lookup",
                "table": 52001,
                "dst": None,
                "ipproto": None,
            },
            {
                "priority": 5250,
                "src": None,
                "fwmark": 0x01000000,
                "fwmask": 0x0F000000,
                "action": "lookup",
                "table": 52001,
                "dst": None,
                "ipproto": None,
            },
            {
                "priority": 5251,
                "src": None,
                "fwmark": 0x01000000,
                "fwmask": 0x0F000000,
                "action": "unreachable",
                "table": None,
                "dst": None,
                "ipproto": None,
            },
        ],
        "marking": {
            "bypass_mark": 0x0F000000,
            "classes": [{"name": "default", "mark": 0x01000000}],
            "masquerade": True,
            "flush_marks": [],
            "bulk_after_bytes": None,
        },
        "guard": None,
    }


def test_good_state_round_trips() -> None:
    state = parse_state(good())
    assert isinstance(state, DesiredState)
    assert state.tunnels[0].peers[0].endpoint == "198.18.0.1:51000"
    assert parse_state(json.loads(state.dumps())) == state
    assert state.to_json() == good()


def test_redacted_hides_keys() -> None:
    doc = good()
    doc["tunnels"][0]["peers"][0]["preshared_key"] = KEY
    text = json.dumps(parse_state(doc).redacted())
    assert KEY not in text
    assert KEY2 in text  # public keys are not secret


def test_empty_state_is_valid() -> None:
    assert parse_state({}) == DesiredState()


def mutate(path: str, value: Any) -> dict[str, Any]:
    """Set a dotted/indexed path like 'tunnels.0.peers.0.endpoint' in a good state."""
    doc = copy.deepcopy(good())
    parts = path.split(".")
    node: Any = doc
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


BAD: list[tuple[str, Any, str]] = [
    ("tunnels.0.name", "eth0", "tunnels[0].name"),
    ("tunnels.0.name", "br-this-is-too-long", "tunnels[0].name"),
    ("tunnels.0.name", "br-Upper", "tunnels[0].name"),
    ("tunnels.0.private_key", "not-a-key", "tunnels[0].private_key"),
    ("tunnels.0.private_key", base64.b64encode(b"short").decode(), "tunnels[0].private_key"),
    ("tunnels.0.addresses", ["198.19.0.2"], "tunnels[0].addresses[0]"),
    ("tunnels.0.addresses", ["300.1.1.1/32"], "tunnels[0].addresses[0]"),
    ("tunnels.0.mtu", 100, "tunnels[0].mtu"),
    ("tunnels.0.mtu", "1380", "tunnels[0].mtu"),
    ("tunnels.0.listen_port", 70000, "tunnels[0].listen_port"),
    ("tunnels.0.fwmark", 0x10000000, "tunnels[0].fwmark"),
    ("tunnels.0.peers.0.endpoint", "gw.example.com:51820", "tunnels[0].peers[0].endpoint"),
    ("tunnels.0.peers.0.endpoint", "198.18.0.1", "tunnels[0].peers[0].endpoint"),
    ("tunnels.0.peers.0.endpoint", "198.18.0.1:0", "tunnels[0].peers[0].endpoint"),
    ("tunnels.0.peers.0.endpoint", "::1:51820", "tunnels[0].peers[0].endpoint"),
    ("tunnels.0.peers.0.public_key", KEY + "A", "tunnels[0].peers[0].public_key"),
    ("tunnels.0.peers.0.allowed_ips", ["nonsense"], "tunnels[0].peers[0].allowed_ips[0]"),
    ("tunnels.0.peers.0.persistent_keepalive", True, "tunnels[0].peers[0].persistent_keepalive"),
    ("tunnels.0.peers.0.colour", "red", "tunnels[0].peers[0].colour"),
    ("tables.0.id", 254, "tables[0].id"),
    ("tables.0.id", 52100, "tables[0].id"),
    ("tables.0.routes.0.dst", "10.0.0.1/8", "tables[0].routes[0].dst"),
    ("tables.0.routes.0.nexthops", [], "tables[0].routes[0].nexthops"),
    ("tables.0.routes.0.nexthops.0.dev", "eth0", "tables[0].routes[0].nexthops[0].dev"),
    ("tables.0.routes.0.nexthops.0.dev", "br-other", "tables[0].routes[0].nexthops[0].dev"),
    ("tables.0.routes.0.nexthops.0.weight", 0, "tables[0].routes[0].nexthops[0].weight"),
    ("rules.0.priority", 100, "rules[0].priority"),
    ("rules.0.priority", 5300, "rules[0].priority"),
    ("rules.0.table", 254, "rules[0].table"),
    ("rules.0.table", 52002, "rules[0].table"),
    ("rules.0.src", None, "rules[0]"),
    ("rules.1.fwmark", 0x00000001, "rules[1].fwmark"),
    ("rules.1.fwmask", None, "rules[1].fwmask"),
    ("rules.1.fwmask", 0xFFFFFFFF, "rules[1].fwmask"),
    ("rules.1.action", "goto", "rules[1].action"),
    ("rules.2.table", 52001, "rules[2].table"),
    ("marking.bypass_mark", 0x01000000, "marking.bypass_mark"),
    ("marking.classes.0.mark", 0x0F000000, "marking.classes[0].mark"),
    ("marking.classes.0.mark", 0x00000100, "marking.classes[0].mark"),
    ("marking.classes.0.name", "Default!", "marking.classes[0].name"),
    ("marking.flush_marks", [7], "marking.flush_marks[0]"),
    ("marking.masquerade", "yes", "marking.masquerade"),
    # classes (docs/classes.md): the bypass class's mark is the helper's own
    ("marking.classes.0.mark", 0x0D000000, "marking.classes[0].mark"),
    ("marking.flush_marks", [0x0D000000], "marking.flush_marks[0]"),
    ("rules.1.fwmark", 0x0D000000, "rules[1].fwmark"),
    ("rules.0.priority", 5291, "rules[0].priority"),
    ("marking.bulk_after_bytes", -1, "marking.bulk_after_bytes"),
    ("marking.bulk_after_bytes", 1.5, "marking.bulk_after_bytes"),
    ("marking.bulk_after_bytes", True, "marking.bulk_after_bytes"),
    ("marking.bulk_after_bytes", 1 << 51, "marking.bulk_after_bytes"),
    ("persistent", 1, "persistent"),
    ("extra", 1, "extra"),
    # confinement holes (issue 9)
    ("tunnels.0.addresses", ["198.19.0.2/24"], "tunnels[0].addresses[0]"),
    ("tunnels.0.addresses", ["127.0.0.2/32"], "tunnels[0].addresses[0]"),
    ("tunnels.0.addresses", ["fe80::2/128"], "tunnels[0].addresses[0]"),
    ("tunnels.0.addresses", ["fd00::2%3/128"], "tunnels[0].addresses[0]"),
    ("tunnels.0.name", "br-lab-hk\n", "tunnels[0].name"),
    ("tunnels.0.peers.0.endpoint", "[fe80::1%3]:1\nremove=true", "tunnels[0].peers[0].endpoint"),
    ("tunnels.0.peers.0.endpoint", "198.18.0.1:5100²", "tunnels[0].peers[0].endpoint"),
    ("tunnels.0.peers.0.endpoint", "198.18.0.1:51000\n", "tunnels[0].peers[0].endpoint"),
    ("tunnels.0.peers.0.allowed_ips", ["fe80::%1/64"], "tunnels[0].peers[0].allowed_ips[0]"),
    ("rules.0.src", "0.0.0.0/0", "rules[0].src"),
    ("rules.0.src", "::/0", "rules[0].src"),
    ("rules.0.dst", "0.0.0.0/0", "rules[0].dst"),
    ("rules.0.dst", "2001:db8::/32", "rules[0].dst"),  # src is IPv4
    ("rules.0.dst", "198.19.0.1/24", "rules[0].dst"),
    ("rules.1.fwmark", 0, "rules[1].fwmark"),
    ("rules.0.priority", 5290, "rules[0].priority"),
    ("rules.0.priority", 5298, "rules[0].priority"),
    ("tables.0.id", 52099, "tables[0].id"),
    ("marking.classes.0.name", "bulk", "marking.classes"),
    ("guard", {"allow": ["0.0.0.0/0"]}, "guard.allow[0]"),
    ("guard", {"allow": ["::/0"]}, "guard.allow[0]"),
    ("guard", {"allow": ["127.0.0.0/8"]}, "guard.allow[0]"),
    ("guard", {"allow": ["64.0.0.0/2"]}, "guard.allow[0]"),  # holds 127/8
    ("guard", {"allow": ["::1/128"]}, "guard.allow[0]"),
    ("guard", {"allow": ["192.168.1.1/24"]}, "guard.allow[0]"),
    ("guard", {"allow": ["fe80::%2/64"]}, "guard.allow[0]"),
    ("guard", {"allow": ["10.0.0.0/8", "10.0.0.0/8"]}, "guard.allow[1]"),
    ("guard", {"allow": [f"10.{i}.0.0/16" for i in range(65)]}, "guard.allow"),
    ("guard", {"allow": [], "via": "br-other"}, "guard.via"),
    ("guard", {"allow": [], "via": "eth0"}, "guard.via"),
    ("guard", {"allow": [], "colour": 1}, "guard.colour"),
    ("guard", ["10.0.0.0/8"], "guard"),
]


@pytest.mark.parametrize(
    ("where", "value", "path"), BAD, ids=[f"{b[0]}={b[1]!r}"[:60] for b in BAD]
)
def test_bad_field_is_named(where: str, value: Any, path: str) -> None:
    with pytest.raises(StateError) as info:
        parse_state(mutate(where, value))
    assert info.value.path == path
    assert str(info.value).startswith(path + ":")


def test_duplicates_are_refused() -> None:
    doc = good()
    doc["tunnels"].append(copy.deepcopy(doc["tunnels"][0]))
    with pytest.raises(StateError, match=r"tunnels\[1\]: duplicate name"):
        parse_state(doc)
    doc = good()
    doc["rules"].append(copy.deepcopy(doc["rules"][0]))
    with pytest.raises(StateError, match=r"rules\[3\]: duplicate"):
        parse_state(doc)


def test_sizes_are_bounded() -> None:
    doc = good()
    doc["tunnels"][0]["peers"][0]["allowed_ips"] = [
        f"10.{i // 256}.{i % 256}.0/24" for i in range(300)
    ]
    with pytest.raises(StateError, match="too many"):
        parse_state(doc)


def test_not_an_object() -> None:
    docs: list[Any] = [[], "x", 3, None]
    for doc in docs:
        with pytest.raises(StateError, match="must be a JSON object"):
            parse_state(doc)


def test_ipv6_endpoint_normalised() -> None:
    doc = mutate("tunnels.0.peers.0.endpoint", "[2001:db8:0::1]:51820")
    assert parse_state(doc).tunnels[0].peers[0].endpoint == "[2001:db8::1]:51820"


def test_a_guard_and_a_dst_rule_round_trip() -> None:
    doc = good()
    doc["guard"] = {"allow": ["192.168.1.0/24", "fd00:1::/64"], "via": "br-lab-hk"}
    doc["rules"].append({"priority": 5240, "src": None, "dst": "198.19.0.1/32",
                         "fwmark": None, "fwmask": None, "action": "lookup",
                         "table": 52001, "ipproto": None})
    state = parse_state(doc)
    assert state.guard is not None and state.guard.via == "br-lab-hk"
    assert state.guard.held().via is None and state.guard.held().allow == state.guard.allow
    assert state.rules[-1].families() == (4,)
    assert parse_state(json.loads(state.dumps())) == state
    assert state.to_json() == doc


def test_a_state_without_the_new_fields_is_what_main_sends() -> None:
    """Backward compatible: no guard, no dst: the engine on main's states parse as before."""
    doc = good()
    del doc["guard"]
    for rule in doc["rules"]:
        del rule["dst"]
    state = parse_state(doc)
    assert state.guard is None and all(r.dst is None for r in state.rules)


def test_field_rules_are_strict() -> None:
    from app.wire import fields

    for bad in ("br-x\n", "br-x\r", " br-x"):
        with pytest.raises(fields.FieldError):
            fields.check_iface(bad)
    for bad in ("²", "1²", "٣", "0x10", "+1", "1 ", ""):
        with pytest.raises(fields.FieldError):
            fields.parse_port(bad)
    assert fields.parse_port("51820") == 51820
    for bad in ("[fe80::1%3]:1", "[fe80::1%eth0]:51820"):
        with pytest.raises(fields.FieldError, match="scope"):
            fields.check_endpoint_literal(bad)
        with pytest.raises(fields.FieldError, match="scope"):
            fields.check_endpoint(bad)


def test_a_status_reply_with_or_without_a_guard() -> None:
    """Both sides read the status with one definition; a reply from a helper that knows
    no guard reads as "no guard", and fields this side does not know are kept aside."""
    from app.wire.status import GuardStatus, HelperStatus

    old = {"backend": "userspace", "persistent": False, "owner_connected": True,
           "grace_remaining_s": None, "tunnels": [], "tables": [52001], "rules": 3,
           "marking": True, "recovered": []}
    status = HelperStatus.from_json(old)
    assert status.guard is None and status.extra == {}
    guard = {"active": True, "held": "client_left", "allow": ["192.168.1.0/24"], "via": None,
             "dropped_packets": 7, "nft": True, "routing": True}
    status = HelperStatus.from_json({**old, "guard": guard, "later": 1})
    assert status.guard == GuardStatus(True, "client_left", ("192.168.1.0/24",), None, 7)
    assert status.extra == {"later": 1}
    assert HelperStatus.from_json(status.to_json()) == status


def test_a_rule_may_narrow_to_icmp_and_nothing_else() -> None:
    from app.core.plan import build_state
    from tests.core.test_plan import PATHS

    doc = build_state(PATHS, {"default": "hk"}, usable={"hk"}).to_json()
    probe = next(r for r in doc["rules"] if r["priority"] == 5200)
    assert probe["ipproto"] == 1 and parse_state(doc).rules[0].ipproto == 1
    probe["ipproto"] = 6
    with pytest.raises(StateError, match=r"rules\[0\]\.ipproto: 6 is not one of 1, 58"):
        parse_state(doc)


# ---- classes by app: the move and rules verbs' arguments (app/wire/classes.py) ----------
def test_rules_and_moves_are_validated_field_by_field() -> None:
    rules = parse_rules([{"exe": "/usr/bin/zoom", "class": "realtime"},
                         {"exe": "/usr/bin/rsync", "class": "bulk", "mptcp": True}])
    assert rules == (ClassRule("/usr/bin/zoom", "realtime"),
                     ClassRule("/usr/bin/rsync", "bulk", True))
    assert parse_rules([]) == ()
    bad: list[tuple[Any, str]] = [
        ([{"exe": "zoom", "class": "bulk"}], "rules[0].exe"),
        ([{"exe": "/usr/bin/../bin/zoom", "class": "bulk"}], "rules[0].exe"),
        ([{"exe": "/usr/bin/zoom/", "class": "bulk"}], "rules[0].exe"),
        ([{"exe": "/usr/bin/zo\0om", "class": "bulk"}], "rules[0].exe"),
        ([{"exe": "/x" * 3000, "class": "bulk"}], "rules[0].exe"),
        ([{"exe": "/usr/bin/zoom", "class": "fast"}], "rules[0].class"),
        ([{"exe": "/usr/bin/zoom", "class": "realtime", "mptcp": True}], "rules[0].mptcp"),
        ([{"exe": "/usr/bin/zoom", "class": "bulk", "why": 1}], "rules[0].why"),
        ([{"exe": "/a", "class": "bulk"}, {"exe": "/a", "class": "realtime"}], "rules[1]"),
        ([{"exe": f"/bin/p{i}", "class": "bulk"} for i in range(257)], "rules"),
        ("/usr/bin/zoom", "rules"),
    ]
    for value, path in bad:
        with pytest.raises(StateError) as info:
            parse_rules(value)
        assert info.value.path == path, (value, info.value)
    assert parse_move({"pids": [1, 42], "class": "bulk"}) == MoveRequest((1, 42), "bulk")
    assert parse_move({"pids": [42], "class": None}).cls is None  # back out of the groups
    for args, path in [({"pids": [], "class": "bulk"}, "pids"),
                       ({"pids": [0], "class": "bulk"}, "pids[0]"),
                       ({"pids": [True], "class": "bulk"}, "pids[0]"),
                       ({"pids": [1 << 23], "class": "bulk"}, "pids[0]"),
                       ({"pids": [5, 5], "class": "bulk"}, "pids[1]"),
                       ({"pids": list(range(1, 258)), "class": "bulk"}, "pids"),
                       ({"pids": [5], "class": "turbo"}, "class"),
                       ({"pids": [5]}, "class"),
                       ({"pids": [5], "class": "bulk", "path": "/sys"}, "path")]:
        with pytest.raises(StateError) as info:
            parse_move(args)
        assert info.value.path == path, (args, info.value)


def spread_doc(slots: list[Any]) -> dict[str, Any]:
    """good() with a bulk class and two routed paths, spreading over ``slots``."""
    doc = good()
    second = copy.deepcopy(doc["rules"][1])
    second.update(priority=5252, fwmark=0x02000000)
    doc["rules"].append(second)
    doc["marking"]["classes"].append({"name": "bulk", "mark": 0x01000000})
    doc["marking"]["spread"] = slots
    return doc


def test_bulk_spreading_round_trips_and_is_left_out_when_off() -> None:
    doc = spread_doc([0x01000000, 0x02000000, 0x01000000])
    state = parse_state(doc)
    assert state.marking is not None and state.marking.spread == (0x01000000, 0x02000000,
                                                                  0x01000000)
    assert state.to_json() == doc
    # Without spreading the field is left out: an older helper takes the state.
    off = parse_state(spread_doc([]))
    assert off.marking is not None and "spread" not in off.to_json()["marking"]


@pytest.mark.parametrize(("slots", "path", "why"), [
    ([0x01000000], "marking.spread", "names one path"),
    ([0x01000000, 0x0E000000], "marking.spread[1]", "closed mark"),
    ([0x01000000, 0x03000000], "marking.spread[1]", "no lookup rule"),
    ([0x01000000, 0x00000001], "marking.spread[1]", "outside Braid's mask"),
    ([0x01000000, 0x02000000] * 33, "marking.spread", ""),
    ("0x01000000", "marking.spread", ""),
])
def test_bad_spreads_are_named(slots: Any, path: str, why: str) -> None:
    with pytest.raises(StateError) as err:
        parse_state(spread_doc(slots))
    assert err.value.path == path and why in str(err.value)


def test_moves_round_trip_and_are_left_out_when_none() -> None:
    doc = spread_doc([0x01000000, 0x02000000])
    doc["marking"]["moves"] = [[0x02000000, 0x01000000]]
    state = parse_state(doc)
    assert state.marking is not None and state.marking.moves == ((0x02000000, 0x01000000),)
    assert state.to_json() == doc
    assert "moves" not in parse_state(spread_doc([0x01000000, 0x02000000])).to_json()["marking"]


@pytest.mark.parametrize(("moves", "path", "why"), [
    ([[0x01000000]], "marking.moves[0]", "a pair"),
    ([[0x01000000, 0x01000000]], "marking.moves[0]", "the path it is on"),
    ([[0x01000000, 0x03000000]], "marking.moves[0][1]", "not one of marking.spread"),
    ([[0x0E000000, 0x01000000]], "marking.moves[0][0]", "not one of marking.spread"),
    ([[0x01000000, 0x00000001]], "marking.moves[0][1]", "outside Braid's mask"),
    ("0x01000000", "marking.moves", ""),
])
def test_bad_moves_are_named(moves: Any, path: str, why: str) -> None:
    doc = spread_doc([0x01000000, 0x02000000])
    doc["marking"]["moves"] = moves
    with pytest.raises(StateError) as err:
        parse_state(doc)
    assert err.value.path == path and why in str(err.value)


def test_moves_need_a_spread() -> None:
    doc = spread_doc([])
    doc["marking"]["moves"] = [[0x01000000, 0x02000000]]
    with pytest.raises(StateError, match=r"not one of marking\.spread") as err:
        parse_state(doc)
    assert err.value.path == "marking.moves[0][0]"


def test_spreading_needs_the_bulk_class() -> None:
    doc = spread_doc([0x01000000, 0x02000000])
    doc["marking"]["classes"].pop()
    with pytest.raises(StateError, match="bulk class") as err:
        parse_state(doc)
    assert err.value.path == "marking.spread"


# ---- realtime copies (docs/multipath.md) ------------------------------------------------
def copied(copies: Any) -> dict[str, Any]:
    """``good`` on a shared exit (nothing masqueraded) with a realtime class, and
    ``copies``."""
    doc = good()
    doc["marking"]["masquerade"] = False
    doc["marking"]["classes"].append({"name": "realtime", "mark": 0x03000000})
    doc["copies"] = copies
    return doc


def test_copies_round_trip_and_a_state_without_them_leaves_the_field_out() -> None:
    state = parse_state(copied({"tunnels": ["br-lab-hk"]}))
    assert state.copies == CopyState(("br-lab-hk",))
    assert parse_state(json.loads(state.dumps())) == state
    assert state.to_json()["copies"] == {"tunnels": ["br-lab-hk"]}
    off = parse_state(copied({"tunnels": []}))  # none now; copies in flight still removed
    assert off.copies == CopyState(())
    # No copies: no field at all, so that a helper from before copies takes the state.
    assert "copies" not in parse_state(copied(None)).to_json()


BAD_COPIES = [
    ({"tunnels": ["br-other"]}, "copies.tunnels[0]", "not one of this state's tunnels"),
    ({"tunnels": ["br-lab-hk", "br-lab-hk"]}, "copies.tunnels[1]", "duplicate"),
    ({"tunnels": ["br-lab-hk\n"]}, "copies.tunnels[0]", ""),
    ({"tunnels": "br-lab-hk"}, "copies.tunnels", ""),
    ({"tunnels": [], "via": "eth0"}, "copies.via", ""),
    (["br-lab-hk"], "copies", "JSON object"),
    ({"tunnels": [f"br-{i}" for i in range(300)]}, "copies.tunnels", "too many"),
]


@pytest.mark.parametrize(("copies", "path", "words"), BAD_COPIES,
                         ids=[repr(b[0])[:40] for b in BAD_COPIES])
def test_a_bad_copies_field_is_named(copies: Any, path: str, words: str) -> None:
    with pytest.raises(StateError) as info:
        parse_state(copied(copies))
    assert info.value.path == path and words in str(info.value), info.value


def test_copies_need_a_realtime_class_and_a_shared_exit() -> None:
    doc = copied({"tunnels": ["br-lab-hk"]})
    doc["marking"]["classes"] = doc["marking"]["classes"][:1]  # no realtime
    with pytest.raises(StateError, match=r"^copies: .*realtime"):
        parse_state(doc)
    doc = copied({"tunnels": ["br-lab-hk"]})
    doc["marking"]["masquerade"] = True  # separate exits: copies would not meet
    with pytest.raises(StateError, match=r"^copies: .*shared exit"):
        parse_state(doc)
    doc = copied({"tunnels": ["br-lab-hk"]})
    doc["marking"] = None
    with pytest.raises(StateError, match=r"^copies: "):
        parse_state(doc)
