"""Gateway names from file names, and the merge of imported gateways into a profile:
pure functions, tested on their own (the CLI only calls them)."""

from __future__ import annotations

import random
import string
from dataclasses import replace

import pytest

from app.core.errors import BraidError
from app.core.profiles.merge import Incoming, merge_gateways
from app.core.profiles.model import Gateway, GatewaySecrets, Peer, Profile, Weights
from app.core.profiles.naming import gateway_name_from_file, unique_gateway_name
from app.wire.fields import GATEWAY_NAME_RE
from tests.util import wg_keypair

# ---- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "name"),
    [
        ("se-got-wg-001.conf", "se-got-wg001"),  # Mullvad: one '-' too many
        ("wg-JP-FREE-12.conf", "wg-jp-free12"),  # ProtonVPN
        ("JP-FREE#12.conf", "jp-free-12"),
        ("HK.conf", "hk"),
        ("Tokyo-1.conf", "tokyo-1"),
        ("HK.CONF", "hk"),
        ("wg0", "wg0"),  # no .conf: the whole name
        ("mullvad-us-nyc-wg-301.conf", "us-nyc-wg301"),  # the common start goes first
        ("ProtonVPN-NL-FREE-12.conf", "nl-free-12"),
        ("wireguard-netherlands-amsterdam-042.conf", "amsterdam042"),
        ("averyveryverylongname.conf", "averyveryver"),
        ("averyveryverylongname42.conf", "averyveryv42"),  # the number stays
        ("001.conf", "gw-001"),  # must start with a letter
        ("#1.conf", "gw-1"),
        (".conf", "gw"),
        ("###.conf", "gw"),
        ("東京.conf", "gw"),
        ("Zürich 2.conf", "zurich-2"),  # accents dropped, not made '-'
        ("my gateway.conf", "my-gateway"),
        ("a--b__c.conf", "a-b-c"),  # squeezed
        ("-hk-.conf", "hk"),  # trimmed
    ],
)
def test_a_valid_name_from_any_file_name(file_name: str, name: str) -> None:
    assert gateway_name_from_file(file_name) == name
    assert GATEWAY_NAME_RE.match(name)


def test_every_derived_name_is_valid() -> None:
    """A seeded pass over random file names (printable, control, non-ASCII characters)."""
    rng = random.Random(14)
    alphabet = string.printable + "äöüßéñ東京€#\x00\x1b\u200b"
    for _ in range(5000):
        file_name = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        name = gateway_name_from_file(file_name + rng.choice(["", ".conf", ".CONF"]))
        assert GATEWAY_NAME_RE.match(name), (file_name, name)
        for taken in ({name}, {name, f"{name}-2"}):
            other = unique_gateway_name(name, taken)
            assert GATEWAY_NAME_RE.match(other) and other not in taken, (name, other)


def test_unique_names() -> None:
    assert unique_gateway_name("hk", set()) == "hk"
    assert unique_gateway_name("hk", {"hk"}) == "hk-2"
    assert unique_gateway_name("hk", {"hk", "hk-2"}) == "hk-3"
    # Shortened the same way to make room for the suffix: the number stays.
    assert unique_gateway_name("us-nyc-wg301", {"us-nyc-wg301"}) == "usnycwg301-2"
    assert unique_gateway_name("abcdefghijkl", {"abcdefghijkl"}) == "abcdefghij-2"


# ---- the merge -----------------------------------------------------------------------

_, PEER = wg_keypair()
KEYS = GatewaySecrets(private_key=wg_keypair()[0], preshared_key=None)


def gw(name: str, source: str | None, address: str = "10.8.0.2/32", **kw: object) -> Gateway:
    return Gateway(name=name, interface=f"br-{name}", addresses=(address,), dns=(), mtu=None,
                   listen_port=None, peer=Peer(PEER, "198.18.0.1:51820", ("0.0.0.0/0",), None),
                   source=source, **kw)  # type: ignore[arg-type]


def parsed(file_name: str, *, name: str | None = None, address: str = "10.8.0.2/32",
           ) -> Incoming:
    """What parse_wg_quick gives for a file of that name."""
    return Incoming(gw(name or gateway_name_from_file(file_name), file_name, address), KEYS,
                    named=name is not None)


def names(profile: Profile) -> list[tuple[str, str | None]]:
    return [(g.name, g.source) for g in profile.gateways]


def test_a_new_profile_gets_every_gateway_in_order() -> None:
    merged = merge_gateways(None, "work", [parsed("se-got-wg-001.conf"), parsed("HK.conf")])
    assert names(merged.profile) == [("se-got-wg001", "se-got-wg-001.conf"), ("hk", "HK.conf")]
    assert [(c.name, c.replaced, c.wanted) for c in merged.changes] == [
        ("se-got-wg001", False, None), ("hk", False, None)]
    assert merged.profile.gateways[0].interface == "br-se-got-wg001"
    assert set(merged.secrets) == {"se-got-wg001", "hk"}
    assert merged.profile.shared_exit is False and merged.profile.name == "work"


def test_the_same_file_again_replaces_its_gateway_keeping_cost_and_probe() -> None:
    old = gw("hk", "hk.conf", cost=3.0, probe="10.8.0.1")
    existing = Profile("work", (old, gw("tk", "tk.conf")), weights=Weights(1, 0, 0, 0))
    merged = merge_gateways(existing, "work", [parsed("HK.conf", address="10.8.0.9/32")])
    hk = merged.profile.gateway("hk")
    assert (hk.cost, hk.probe, hk.addresses, hk.source) == (3.0, "10.8.0.1", ("10.8.0.9/32",),
                                                           "HK.conf")
    assert names(merged.profile) == [("hk", "HK.conf"), ("tk", "tk.conf")]  # same place
    assert merged.changes[0].replaced and merged.profile.weights == Weights(1, 0, 0, 0)
    # A cost given applies to the replaced gateway too.
    again = merge_gateways(existing, "work", [parsed("hk.conf")], cost=5.0)
    assert again.profile.gateway("hk").cost == 5.0


def test_a_different_file_never_silently_replaces_a_gateway() -> None:
    existing = Profile("work", (gw("hk", "hk.conf"),))
    merged = merge_gateways(existing, "work", [parsed("hk#.conf")])  # derives "hk" too
    assert names(merged.profile) == [("hk", "hk.conf"), ("hk-2", "hk#.conf")]
    change = merged.changes[0]
    assert (change.name, change.replaced, change.wanted, change.wanted_by) == (
        "hk-2", False, "hk", "hk.conf")
    # Importing that file again finds its own gateway (hk-2), not hk.
    again = merge_gateways(merged.profile, "work", [parsed("hk#.conf")])
    assert names(again.profile) == names(merged.profile) and again.changes[0].replaced
    assert again.changes[0].name == "hk-2"


def test_a_gateway_imported_before_sources_were_kept() -> None:
    """A gateway without a source came from the file whose stem, lower-cased, is its name."""
    existing = Profile("work", (gw("tokyo-1", None), gw("hk", None)))
    merged = merge_gateways(existing, "work", [parsed("Tokyo-1.conf"), parsed("hk!.conf")])
    assert [(c.name, c.replaced) for c in merged.changes] == [("tokyo-1", True), ("hk-2", False)]
    assert merged.changes[1].wanted_by == "gateway hk"


def test_two_files_of_one_name_in_one_import() -> None:
    merged = merge_gateways(None, "work", [parsed("hk.conf"), parsed("HK.conf"),
                                           parsed("hk-2.conf")])
    # The second "hk" skips hk-2: a later file of this import gives that name.
    assert [c.name for c in merged.changes] == ["hk", "hk-3", "hk-2"]
    assert merged.changes[1].wanted_by == "hk.conf"


def test_names_given_with_name() -> None:
    existing = Profile("work", (gw("hk", "hk.conf", cost=2.0),))
    merged = merge_gateways(existing, "work", [parsed("tk.conf"), parsed("wg0.conf", name="hk"),
                                               parsed("wg1.conf", name="tk")])
    # --name replaces the gateway of that name, and wins over a name a file derives.
    assert [(c.name, c.replaced) for c in merged.changes] == [
        ("tk-2", False), ("hk", True), ("tk", False)]
    assert merged.profile.gateway("hk").cost == 2.0
    with pytest.raises(BraidError, match=r"wg0\.conf and wg1\.conf are both given the name 'x'"):
        merge_gateways(None, "work", [parsed("wg0.conf", name="x"), parsed("wg1.conf", name="x")])


def test_shared_exit_is_set_kept_and_cleared() -> None:
    shared = merge_gateways(None, "corp", [parsed("hk.conf"), parsed("tk.conf")],
                            shared_exit=True).profile
    assert shared.shared_exit
    more = merge_gateways(shared, "corp", [parsed("sg.conf")]).profile
    assert more.shared_exit and len(more.gateways) == 3
    assert not merge_gateways(more, "corp", [], shared_exit=False).profile.shared_exit


def test_shared_exit_needs_one_inner_address_and_names_the_files_that_differ() -> None:
    files = [parsed("hk.conf"), parsed("tk.conf", address="10.9.0.2/32"),
             parsed("sg.conf", address="10.8.0.2/24"), parsed("us.conf", address="10.7.0.2/32")]
    with pytest.raises(BraidError) as err:
        merge_gateways(None, "corp", files, shared_exit=True)
    what = err.value.what
    assert "same inner address as gateway 'hk' (from hk.conf) (10.8.0.2)" in what
    assert "gateway 'tk' (from tk.conf) has 10.9.0.2" in what
    assert "gateway 'us' (from us.conf) has 10.7.0.2" in what
    assert "sg.conf" not in what  # the same host address, written with its prefix
    assert "--shared-exit" in err.value.fix
    # Into an existing shared-exit profile, without the flag: still refused.
    shared = merge_gateways(None, "corp", files[:1], shared_exit=True).profile
    with pytest.raises(BraidError, match=r"tk\.conf"):
        merge_gateways(shared, "corp", files[1:2])
    # Separate exits: different addresses are what they are.
    assert len(merge_gateways(None, "corp", files).profile.gateways) == 4


def test_the_merge_refuses_what_cannot_connect() -> None:
    def port(file_name: str, number: int) -> Incoming:
        inc = parsed(file_name)
        return replace(inc, gateway=replace(inc.gateway, listen_port=number))

    with pytest.raises(BraidError, match=r"\(from hk.conf\) and gateway 'tk' \(from tk.conf\) "
                                         r"both have ListenPort 51820") as err:
        merge_gateways(None, "work", [port("hk.conf", 51820), port("tk.conf", 51820)])
    assert "remove ListenPort" in err.value.fix
    many = [parsed(f"gw{i}.conf") for i in range(13)]
    with pytest.raises(BraidError, match="would have 13 gateways; Braid steers at most 12"):
        merge_gateways(None, "work", many)
    assert len(merge_gateways(None, "work", many[:12]).profile.gateways) == 12
