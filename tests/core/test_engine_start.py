"""The engine's state while it starts: what a view that asks early is told."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.core import engine as engine_mod
from app.core.engine import Engine
from app.core.errors import BraidError
from app.core.model import ConnState, EngineSnapshot
from app.core.profiles.model import Gateway, GatewaySecrets, Peer, Profile
from tests.util import wait_until_async, wg_keypair


def test_a_view_that_asks_before_the_first_await_returns_sees_connecting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control socket answers before the engine's first await (the LAN's networks
    read over netlink) returns; a view that asks then must see CONNECTING, not the
    machine's initial DISCONNECTED, which `braid up` reads as a connection that ended
    ("it did not connect", seen on a busy CI machine)."""
    keys = GatewaySecrets(private_key=wg_keypair()[0], preshared_key=None)
    gw = Gateway(name="a", interface="br-a", addresses=("10.8.0.2/32",), dns=(), mtu=None,
                 listen_port=None, probe=None,
                 peer=Peer(public_key=wg_keypair()[1], endpoint="192.0.2.1:51820",
                           allowed_ips=("0.0.0.0/0",), persistent_keepalive=None))
    seen: list[EngineSnapshot] = []
    engine = Engine(Profile(name="p", gateways=(gw,)), {"a": keys}, tmp_path / "none.sock",
                    seen.append)

    async def go() -> None:
        reading = asyncio.Event()
        release = asyncio.Event()

        async def slow_lan(lan_access: bool, exclude: object) -> tuple[str, ...]:
            reading.set()
            await release.wait()
            return ()

        monkeypatch.setattr(engine_mod.lan, "allowed", slow_lan)
        run = asyncio.create_task(engine.run(asyncio.Event()))
        await asyncio.wait_for(reading.wait(), 10)
        assert engine.snapshot().state is ConnState.CONNECTING
        release.set()
        with pytest.raises(BraidError):  # no helper at that socket: said, and raised
            await asyncio.wait_for(run, 10)
        await wait_until_async(lambda: bool(seen), timeout=10)

    asyncio.run(go())
    assert seen[0].state is ConnState.CONNECTING  # what the views heard first
