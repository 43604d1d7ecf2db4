"""WireGuard devices: the kernel's (netlink) or wireguard-go's (a supervised child)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import AsyncWireGuard

from app.helper import netlink, procs, uapi
from app.helper.errors import HelperError, KernelError
from app.helper.statedir import StateDir
from app.wire.errors import Code
from app.wire.state import TunnelState

log = logging.getLogger("braid.helper")

START_TIMEOUT = 10.0  # wireguard-go creating its TUN device and UAPI socket
STOP_TIMEOUT = 5.0
RESTART_BACKOFF = (0.2, 1.0, 5.0)  # after the first, second, later deaths in a row
STABLE_S = 30.0  # a child that ran this long before it died starts the backoff again


class Backend(Protocol):
    name: str

    async def ensure(self, ipr: AsyncIPRoute, tunnel: TunnelState) -> list[str]:
        """Create the device if missing, then configure what differs."""

    async def remove(self, ipr: AsyncIPRoute, name: str) -> bool: ...

    async def stats(self, name: str) -> uapi.DeviceStats | None: ...

    def pid(self, name: str) -> int | None: ...

    def restarts(self, name: str) -> int: ...

    def journal(self) -> list[dict[str, Any]]:
        """Processes to find again after a crash (none for the kernel backend)."""

    def forget(self, name: str) -> None:
        """The device's configuration is not what the helper last set (drift, a failed
        change): the next ensure sets all of it."""

    def bound_logs(self) -> None:
        """Keep what children write within its size limit."""

    def running(self, name: str) -> bool:
        """Whether the device's process (if it has one) is alive."""

    async def drift(self, tunnel: TunnelState) -> list[str]:
        """How the device's WireGuard configuration differs from ``tunnel`` (never a
        key in the words)."""


def kernel_has_wireguard() -> bool:
    return Path("/sys/module/wireguard").exists()


def choose(kind: str, log_dir: StateDir, on_died: Callable[[str], None]) -> Backend:
    if kind == "auto":
        kind = "kernel" if kernel_has_wireguard() else "userspace"
    if kind == "kernel":
        if not kernel_has_wireguard():
            raise HelperError(
                Code.NO_BACKEND,
                "this kernel has no WireGuard module",
                "use --backend userspace (wireguard-go) or load the module (modprobe wireguard)",
            )
        return KernelBackend()
    if shutil.which("wireguard-go") is None:
        raise HelperError(
            Code.NO_BACKEND,
            "wireguard-go is not installed and the kernel has no WireGuard",
            "apt-get install --no-install-recommends wireguard-go",
        )
    return UserspaceBackend(log_dir, on_died)


async def _refuse_foreign(ipr: AsyncIPRoute, name: str) -> None:
    kind = await netlink.foreign_link(ipr, name)
    if kind is not None:
        raise KernelError(
            f"{name} already exists and is not a WireGuard tunnel (it is a {kind} link)",
            "give the gateway another interface name in the profile",
        )


# ---- wireguard-go ----------------------------------------------------------------------
@dataclass
class _Child:
    process: asyncio.subprocess.Process
    ident: procs.ProcId
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False
    started: float = dataclasses.field(default_factory=time.monotonic)


class UserspaceBackend:
    """wireguard-go children, one per tunnel, restarted when one dies.

    ``on_died(name)`` tells the reconciler to bring the tunnel back (its device, and so
    its addresses and routes, died with the process)."""

    name = "userspace"

    def __init__(self, log_dir: StateDir, on_died: Callable[[str], None]) -> None:
        self._log_dir = log_dir
        self._on_died = on_died
        self._children: dict[str, _Child] = {}
        self._configured: dict[str, TunnelState] = {}
        self._ports: dict[str, int] = {}  # the port a device picked itself
        self._restarts: dict[str, int] = {}
        self._streak: dict[str, int] = {}  # deaths in a row, for the backoff

    async def ensure(self, ipr: AsyncIPRoute, tunnel: TunnelState) -> list[str]:
        changes: list[str] = []
        child = self._children.get(tunnel.name)
        if child is not None and child.process.returncode is None and (
                await netlink.link_index(ipr, tunnel.name) is None):
            # Its device was deleted under it (`ip link del`, or it is dying): it is about
            # to exit. A restart like any other, counted as one.
            self._restarts[tunnel.name] = self._restarts.get(tunnel.name, 0) + 1
            await self._reap(tunnel.name, child)
            child = None
        if child is None or child.process.returncode is not None:
            await self._start(ipr, tunnel.name)
            self._configured.pop(tunnel.name, None)
            self._ports.pop(tunnel.name, None)
            changes.append(f"{tunnel.name}: started wireguard-go")
        # A device left to pick its port keeps the one it picked: going back to such a
        # state (a rollback) sets that port again, not a new random one.
        want = tunnel
        if tunnel.listen_port is None and tunnel.name in self._ports:
            want = dataclasses.replace(tunnel, listen_port=self._ports[tunnel.name])
        old = self._configured.pop(tunnel.name, None)  # unknown until this succeeds
        if uapi.configure(tunnel.name, old, want):
            changes.append(f"{tunnel.name}: configured")
        if want.listen_port is None:
            stats = uapi.stats(tunnel.name)
            if stats is not None and stats.listen_port:
                self._ports[tunnel.name] = stats.listen_port
                want = dataclasses.replace(tunnel, listen_port=stats.listen_port)
        self._configured[tunnel.name] = want
        return changes

    def forget(self, name: str) -> None:
        self._configured.pop(name, None)

    def bound_logs(self) -> None:
        for name in self._children:
            self._log_dir.bound_log(_log_name(name))

    def running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.process.returncode is None

    async def drift(self, tunnel: TunnelState) -> list[str]:
        if not self.running(tunnel.name):
            return []
        have = uapi.config(tunnel.name)
        return ["it does not answer"] if have is None else uapi.drift(tunnel, have)

    async def _start(self, ipr: AsyncIPRoute, name: str) -> None:
        await _refuse_foreign(ipr, name)
        # A device of this name that no child of ours serves is a leftover: replace it.
        await netlink.delete_link(ipr, name)
        log_name = _log_name(name)
        fd = self._log_dir.open_log(log_name)
        try:
            # Keys never go here: argv is the interface name, env a bare minimum.
            process = await asyncio.create_subprocess_exec(
                "wireguard-go",
                "-f",
                name,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"), "LOG_LEVEL": "error"},
                start_new_session=True,  # no terminal signals; survives to be cleaned
            )
        finally:
            os.close(fd)
        ident = procs.ident(process.pid) or procs.ProcId(process.pid, 0)
        child = _Child(process, ident)
        self._children[name] = child
        deadline = time.monotonic() + START_TIMEOUT
        while not (uapi.answers(name) and await netlink.link_index(ipr, name) is not None):
            if process.returncode is not None or time.monotonic() > deadline:
                await self._reap(name, child)
                tail = self._log_dir.tail(log_name).strip()
                raise KernelError(f"{name}: wireguard-go did not start: {tail or 'no output'}")
            await asyncio.sleep(0.01)
        child.watcher = asyncio.create_task(self._watch(name, child))
        log.info("%s: wireguard-go running, pid %d", name, process.pid)

    async def _watch(self, name: str, child: _Child) -> None:
        rc = await child.process.wait()
        if child.stopping or self._children.get(name) is not child:
            return
        del self._children[name]
        self._configured.pop(name, None)
        self._restarts[name] = self._restarts.get(name, 0) + 1
        # The backoff grows with deaths in a row; one that ran a while starts it again.
        lived = time.monotonic() - child.started
        self._streak[name] = 1 if lived > STABLE_S else self._streak.get(name, 0) + 1
        log.warning(
            "%s: wireguard-go (pid %d) exited with %s; restarting", name, child.ident.pid, rc
        )
        self._on_died(name)

    def backoff(self, name: str) -> float:
        n = self._streak.get(name, 0)
        return RESTART_BACKOFF[min(max(n - 1, 0), len(RESTART_BACKOFF) - 1)]

    async def _reap(self, name: str, child: _Child) -> None:
        child.stopping = True
        if self._children.get(name) is child:
            del self._children[name]
        if child.process.returncode is None:
            child.process.terminate()
            try:
                await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                child.process.kill()
                await child.process.wait()
        if child.watcher is not None:
            child.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await child.watcher

    async def remove(self, ipr: AsyncIPRoute, name: str) -> bool:
        self._configured.pop(name, None)
        self._ports.pop(name, None)
        self._restarts.pop(name, None)
        self._streak.pop(name, None)
        child = self._children.get(name)
        if child is not None:
            await self._reap(name, child)
        # wireguard-go removes its device on SIGTERM; a SIGKILLed one leaves the socket.
        gone = await netlink.delete_link(ipr, name) or child is not None
        sock = uapi.socket_path(name)
        if sock.exists() and not uapi.answers(name):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        return gone

    async def stats(self, name: str) -> uapi.DeviceStats | None:
        return uapi.stats(name) if name in self._children else None

    def pid(self, name: str) -> int | None:
        child = self._children.get(name)
        return child.ident.pid if child is not None else None

    def restarts(self, name: str) -> int:
        return self._restarts.get(name, 0)

    def journal(self) -> list[dict[str, Any]]:
        return [{"iface": n, **c.ident.to_json()} for n, c in sorted(self._children.items())]


def _log_name(iface: str) -> str:
    return f"wireguard-go-{iface}.log"


# ---- kernel ----------------------------------------------------------------------------
def _endpoint_args(endpoint: str | None) -> dict[str, Any]:
    if endpoint is None:
        return {}
    host, _, port = endpoint.rpartition(":")
    return {"endpoint_addr": host.strip("[]"), "endpoint_port": int(port)}


@contextlib.asynccontextmanager
async def _wireguard() -> AsyncIterator[AsyncWireGuard]:
    wg = AsyncWireGuard()
    try:
        await wg.setup_endpoint()  # binds the "wireguard" generic netlink family
        yield wg
    finally:
        wg.close()


class KernelBackend:
    """The kernel's WireGuard over generic netlink (pyroute2). Not exercised on hosts
    without the module (the build machines): the userspace backend is what runs there."""

    name = "kernel"

    def __init__(self) -> None:
        self._configured: dict[str, TunnelState] = {}

    async def ensure(self, ipr: AsyncIPRoute, tunnel: TunnelState) -> list[str]:
        changes: list[str] = []
        await _refuse_foreign(ipr, tunnel.name)
        if await netlink.link_index(ipr, tunnel.name) is None:
            try:
                await ipr.link("add", ifname=tunnel.name, kind="wireguard")
            except NetlinkError as exc:
                raise KernelError(f"cannot create WireGuard link {tunnel.name}: {exc}") from None
            self._configured.pop(tunnel.name, None)
            changes.append(f"{tunnel.name}: created")
        old = self._configured.pop(tunnel.name, None)  # unknown until this succeeds
        if old == tunnel:
            self._configured[tunnel.name] = tunnel
            return changes
        try:
            async with _wireguard() as wg:
                if old is None or (old.private_key, old.listen_port, old.fwmark) != (
                    tunnel.private_key,
                    tunnel.listen_port,
                    tunnel.fwmark,
                ):
                    await wg.set(
                        tunnel.name,
                        private_key=tunnel.private_key,
                        listen_port=tunnel.listen_port or 0,
                        fwmark=tunnel.fwmark or 0,
                    )
                before = {p.public_key: p for p in old.peers} if old else {}
                after = {p.public_key for p in tunnel.peers}
                for key in before.keys() - after:
                    await wg.set(tunnel.name, peer={"public_key": key, "remove": True})
                for peer in tunnel.peers:
                    if before.get(peer.public_key) == peer:
                        continue
                    await wg.set(
                        tunnel.name,
                        peer={
                            "public_key": peer.public_key,
                            "preshared_key": peer.preshared_key or uapi.hex_key(uapi.ZERO_KEY_HEX),
                            "persistent_keepalive": peer.persistent_keepalive or 0,
                            "replace_allowed_ips": True,
                            "allowed_ips": list(peer.allowed_ips),
                            **_endpoint_args(peer.endpoint),
                        },
                    )
        except (NetlinkError, ValueError, OSError) as exc:
            raise KernelError(
                f"{tunnel.name}: the kernel refused its WireGuard setup: {exc}"
            ) from None
        self._configured[tunnel.name] = tunnel
        changes.append(f"{tunnel.name}: configured")
        return changes

    async def remove(self, ipr: AsyncIPRoute, name: str) -> bool:
        self._configured.pop(name, None)
        return await netlink.delete_link(ipr, name)

    async def stats(self, name: str) -> uapi.DeviceStats | None:
        try:
            async with _wireguard() as wg:
                msgs = [m async for m in await wg.info(name)]
        except (NetlinkError, OSError):
            return None
        peers: list[uapi.PeerStats] = []
        listen_port = fwmark = None
        for msg in msgs:
            listen_port = msg.get("WGDEVICE_A_LISTEN_PORT", listen_port)
            fwmark = msg.get("WGDEVICE_A_FWMARK", fwmark)
            for peer in msg.get("WGDEVICE_A_PEERS") or []:
                hs = peer.get("WGPEER_A_LAST_HANDSHAKE_TIME") or {}
                sec = int(hs.get("tv_sec", 0)) if isinstance(hs, dict) else 0
                key = peer.get("WGPEER_A_PUBLIC_KEY")
                ep = peer.get("WGPEER_A_ENDPOINT")
                peers.append(
                    uapi.PeerStats(
                        public_key=key.decode() if isinstance(key, bytes) else str(key),
                        endpoint=f"{ep['addr']}:{ep['port']}" if isinstance(ep, dict) else None,
                        last_handshake=float(sec) if sec else None,
                        rx_bytes=int(peer.get("WGPEER_A_RX_BYTES") or 0),
                        tx_bytes=int(peer.get("WGPEER_A_TX_BYTES") or 0),
                    )
                )
        return uapi.DeviceStats(listen_port, fwmark, tuple(peers))

    def pid(self, name: str) -> int | None:
        return None

    def restarts(self, name: str) -> int:
        return 0

    def journal(self) -> list[dict[str, Any]]:
        return []

    def forget(self, name: str) -> None:
        self._configured.pop(name, None)

    def bound_logs(self) -> None:
        pass

    def running(self, name: str) -> bool:
        return True

    async def drift(self, tunnel: TunnelState) -> list[str]:
        return []  # the kernel's device: its configuration is netlink's, not read back
