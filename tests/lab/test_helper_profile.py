"""`braid lab up` proper: the lab's own helper in the client namespace, and its profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import targets
from app.core.helper_client import SyncHelperClient
from app.core.profiles.store import ProfileStore
from app.lab import proc, topology
from tests.lab.conftest import LabFactory


def test_helper_and_profile(lab_factory: LabFactory, config_dir: Path) -> None:
    info = lab_factory("cn-us", start_helper=True, write_profile=True)
    lab = info.name
    with SyncHelperClient(info.helper_socket) as client:
        assert client.hello()
    assert proc.ns_pids(topology.netns(lab, "client"))  # the helper runs in there
    store = ProfileStore()
    profile = store.load(f"lab-{lab}")
    assert profile.lab == lab
    assert [g.name for g in profile.gateways] == ["us", "hk", "tyo", "sgp"]
    hk = profile.gateway("hk")
    assert hk.interface == f"br-{lab}-hk" and hk.addresses == ("198.19.1.2/32",)
    assert hk.peer.endpoint == "198.18.0.1:51001" and hk.cost == 2.0
    assert hk.peer.public_key == info.gateway("hk").public_key
    secrets = store.load_secrets(profile)
    assert secrets["hk"].private_key == info.gateway("hk").client_private_key

    topology.destroy(lab)
    assert f"lab-{lab}" not in store.names()
    assert not info.helper_socket.exists()


def test_a_users_own_profile_of_that_name_is_left_alone(lab_factory: LabFactory,
                                                        config_dir: Path) -> None:
    info = lab_factory("clean", start_helper=False, write_profile=True)
    store = ProfileStore()
    path = store.path(f"lab-{info.name}")
    # Someone rewrote it as their own (no lab marker): `lab down` must not delete it.
    path.write_text(path.read_text().replace(f'lab = "{info.name}"\n', ""))
    assert store.load(f"lab-{info.name}").lab is None
    topology.destroy(info.name)
    assert f"lab-{info.name}" in store.names()
    store.delete(f"lab-{info.name}")


@pytest.mark.parametrize("scenario", ["clean", "flaky"])
def test_builtin_scenarios_build(lab_factory: LabFactory, scenario: str) -> None:
    info = lab_factory(scenario)
    assert len(info.gateways) == 3


def test_a_shared_exit_lab_writes_a_shared_exit_profile(lab_factory: LabFactory,
                                                         config_dir: Path) -> None:
    info = lab_factory("clean", write_profile=True, exit="shared")
    profile = ProfileStore().load(f"lab-{info.name}")
    assert profile.shared_exit and profile.lab == info.name
    # One address on every tunnel; each path probed at the exit's end of its backbone.
    assert {g.addresses for g in profile.gateways} == {("198.19.100.2/32",)}
    assert [g.probe for g in profile.gateways] == ["198.19.32.1", "198.19.33.1", "198.19.34.1"]
    assert {g.peer.allowed_ips for g in profile.gateways} == {("0.0.0.0/0",)}
    placement = targets.placement(targets.ConnectTarget.for_lab(info.name), profile)
    assert placement.probe_targets == {"hk": "198.19.32.1", "tyo": "198.19.33.1",
                                       "sgp": "198.19.34.1"}


def test_a_separate_exit_lab_writes_the_profile_it_always_did(lab_factory: LabFactory,
                                                             config_dir: Path) -> None:
    info = lab_factory("clean", write_profile=True)
    profile = ProfileStore().load(f"lab-{info.name}")
    assert not profile.shared_exit
    assert [g.addresses for g in profile.gateways] == [
        ("198.19.0.2/32",), ("198.19.1.2/32",), ("198.19.2.2/32",)]
    assert {g.probe for g in profile.gateways} == {None}
    placement = targets.placement(targets.ConnectTarget.for_lab(info.name), profile)
    assert placement.probe_targets == {"hk": "198.19.0.1", "tyo": "198.19.1.1",
                                       "sgp": "198.19.2.1"}
