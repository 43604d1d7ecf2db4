"""`braid lab transfer`: TCP bulk transfer between the lab's client and its server.

Upload (default) sends to the server's TCP sink, which answers "received N" once it has
read everything, so the time is the time the far side had it all. `reverse` downloads
from the bulk source. ``mptcp``: the flows are MPTCP connections (IPPROTO_MPTCP; the
lab's server speaks it), each of which the client's kernel spreads over one subflow per
tunnel that Braid's helper gave an endpoint (docs/multipath.md, "MPTCP"). Runs inside
the client namespace as `python -m app.lab.transfer`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from app.core.errors import BraidError

SERVER = "198.18.200.1"
BULK_PORT, SINK_PORT = 9002, 9003
IPPROTO_MPTCP = 262  # Linux's; Python 3.11 has no name for it
CHUNK = bytes(256 * 1024)
MAX_MB, MAX_FLOWS = 100_000.0, 64


@dataclass(frozen=True)
class TransferResult:
    direction: str  # "up" (client -> server) or "down"
    flows: int
    size_bytes: int  # asked, all flows together
    done_bytes: int  # moved before the end or the timeout
    seconds: float
    mbit_s: float  # done_bytes over seconds
    flow_mbit_s: tuple[float, ...]
    completed: bool
    # With mptcp: the most subflows the far end saw a flow have (uploads: the sink
    # counts them), or None where it saw plain TCP (a fallback) or did not say.
    mptcp_subflows: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> TransferResult:
        return TransferResult(**{**doc, "flow_mbit_s": tuple(doc["flow_mbit_s"])})


def check_args(size_mb: float, flows: int, timeout: float) -> None:
    if not 0 < size_mb <= MAX_MB:
        raise BraidError(f"--size {size_mb} MB is out of range",
                         f"use more than 0, up to {MAX_MB:g}")
    if not 1 <= flows <= MAX_FLOWS:
        raise BraidError(f"--flows {flows} is out of range", f"use 1 to {MAX_FLOWS}")
    if timeout <= 0:
        raise BraidError(f"--timeout {timeout} must be above 0", "give seconds, e.g. 120")


def transfer(lab: str, *, size_mb: float = 10.0, flows: int = 1, reverse: bool = False,
             timeout: float = 120.0, baseline: bool = False,
             mptcp: bool = False) -> TransferResult:
    from app.lab import topology

    check_args(size_mb, flows, timeout)
    node = "base" if baseline else "client"
    argv = topology.python_argv("app.lab.transfer", "--size", str(size_mb), "--flows",
                                str(flows), "--timeout", str(timeout))
    if reverse:
        argv.append("--reverse")
    if mptcp:
        argv.append("--mptcp")
    return TransferResult.from_json(topology.run_json(lab, node, argv, timeout=timeout + 30))


def one_mptcp_flow(lab: str, *, size_mb: float = 10.0, reverse: bool = False,
                   timeout: float = 120.0) -> TransferResult:
    """One MPTCP connection to the lab's server (the benchmarks' "mptcp" row): with a
    connection up, the client's kernel opens a subflow per healthy tunnel."""
    return transfer(lab, size_mb=size_mb, flows=1, reverse=reverse, timeout=timeout,
                    mptcp=True)


async def _connect(port: int, mptcp: bool) -> tuple[asyncio.StreamReader,
                                                   asyncio.StreamWriter]:
    if not mptcp:
        return await asyncio.open_connection(SERVER, port)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError as exc:
        raise BraidError(f"no MPTCP socket here ({exc.strerror})",
                         "a kernel with MPTCP and net.mptcp.enabled = 1") from None
    try:
        # Blocking, on a thread: asyncio's sock_connect asks getaddrinfo about the socket's
        # protocol, and getaddrinfo knows no IPPROTO_MPTCP.
        await asyncio.get_running_loop().run_in_executor(None, sock.connect, (SERVER, port))
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return await asyncio.open_connection(sock=sock)


async def _one_flow(size: int, reverse: bool, done: list[int], i: int,
                    mptcp: bool = False, seen: list[int | None] | None = None) -> float:
    reader, writer = await _connect(BULK_PORT if reverse else SINK_PORT, mptcp)
    try:
        if reverse:
            writer.write(f"{size}\n".encode())
            await writer.drain()
            while chunk := await reader.read(1 << 18):
                done[i] += len(chunk)
        else:
            view = memoryview(CHUNK)
            left = size
            while left > 0:
                n = min(left, len(CHUNK))
                writer.write(view[:n])
                await writer.drain()
                left -= n
            writer.write_eof()
            # "received N", or "received N mptcp K" from an MPTCP connection.
            answer = (await reader.readline()).decode().split()
            done[i] = int(answer[1]) if len(answer) >= 2 else 0
            if seen is not None and len(answer) == 4 and answer[2] == "mptcp":
                seen[i] = int(answer[3])
    finally:
        writer.close()
    return time.monotonic()


async def run_flows(size: int, flows: int, reverse: bool, timeout: float,
                    mptcp: bool = False) -> TransferResult:
    per = [size // flows + (1 if i < size % flows else 0) for i in range(flows)]
    done = [0] * flows
    seen: list[int | None] = [None] * flows
    start = time.monotonic()
    tasks = [asyncio.create_task(_one_flow(per[i], reverse, done, i, mptcp, seen))
             for i in range(flows)]
    finished, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    ends = [t.result() if not t.exception() else time.monotonic() for t in finished]
    end = max(ends) if not pending and ends else time.monotonic()
    seconds = max(end - start, 1e-9)
    flow_rates = []
    for i, task in enumerate(tasks):
        t_end = task.result() if task in finished and not task.exception() else end
        flow_rates.append(done[i] * 8 / max(t_end - start, 1e-9) / 1e6)
    total = sum(done)
    return TransferResult(
        direction="down" if reverse else "up", flows=flows, size_bytes=size, done_bytes=total,
        seconds=seconds, mbit_s=total * 8 / seconds / 1e6, flow_mbit_s=tuple(flow_rates),
        completed=total >= size and not pending,
        mptcp_subflows=max((n for n in seen if n is not None), default=None),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.lab.transfer")
    parser.add_argument("--size", type=float, default=10.0, help="MB, all flows together")
    parser.add_argument("--flows", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--mptcp", action="store_true")
    args = parser.parse_args(argv)
    size = int(args.size * 1_000_000)
    result = asyncio.run(run_flows(size, args.flows, args.reverse, args.timeout, args.mptcp))
    json.dump(result.to_json(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
