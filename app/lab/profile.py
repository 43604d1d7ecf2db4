"""The lab's Braid profile (`lab-<lab>`): its gateways as a user's profile would have them.

Saved through PROFILE's ProfileStore, so keys go to the keyring like any import, and the
engine connects to a lab exactly as it connects to real gateways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.errors import BraidError
from app.core.profiles.model import Gateway, GatewaySecrets, Peer, Profile
from app.core.profiles.store import ProfileStore
from app.lab.dnsserver import DOMAIN
from app.lab.model import SERVER_ADDRESS, SHARED
from app.lab.scenario import Scenario

if TYPE_CHECKING:
    from app.lab.topology import LabInfo

TUNNEL_MTU = 1420  # the underlay's 1500 less WireGuard's 80 (IPv6-safe, as wg-quick picks)


def profile_name(lab: str) -> str:
    return f"lab-{lab}"


def lab_profile(info: LabInfo, scen: Scenario) -> tuple[Profile, dict[str, GatewaySecrets]]:
    """With a shared exit every gateway has the same address (198.19.100.2/32) and a probe
    address that answers through its own path alone: the exit's end of its backbone."""
    shared = info.exit == SHARED
    gateways = tuple(
        Gateway(
            name=gw.name,
            interface=gw.client_interface,
            addresses=(gw.client_address,) + ((gw.client_address6,) if gw.client_address6
                                               else ()),
            # The far side's resolver, reachable only through a gateway, and the lab's
            # search domain: `server` is server.braid.lab.
            dns=(SERVER_ADDRESS, DOMAIN),
            mtu=TUNNEL_MTU,
            listen_port=None,
            peer=Peer(public_key=gw.public_key, endpoint=gw.endpoint,
                      allowed_ips=("0.0.0.0/0", "::/0") if info.ipv6 else ("0.0.0.0/0",),
                      persistent_keepalive=25),
            cost=scen.path(gw.name).cost,
            probe=gw.probe_address if shared else None,
        )
        for gw in info.gateways
    )
    secrets = {gw.name: GatewaySecrets(private_key=gw.client_private_key, preshared_key=None)
               for gw in info.gateways}
    return Profile(name=profile_name(info.name), gateways=gateways, lab=info.name,
                   shared_exit=shared), secrets


def write_lab_profile(info: LabInfo, scen: Scenario, store: ProfileStore | None = None) -> None:
    profile, secrets = lab_profile(info, scen)
    (store or ProfileStore()).save(profile, secrets)


def forget_lab_profile(lab: str, store: ProfileStore | None = None) -> None:
    """Delete `lab-<lab>` if it is this lab's profile; a user's own profile of that name stays."""
    store = store or ProfileStore()
    name = profile_name(lab)
    if not store.exists(name):
        return
    try:
        mine = store.load(name).lab == lab
    except BraidError:
        mine = False  # unreadable: not provably the lab's; leave it to `braid profile delete`
    if mine:
        store.delete(name)
