"""Saturating TCP through one chosen path: flows bound to that path's tunnel address
(the rule ``from <address> lookup <path table>`` sends them through it, whatever the
class's marks say), uploading to the lab server's sink or downloading from its bulk
source for a given time. Runs inside the lab's client namespace:

    python -m benchmarks.loadgen --source 10.x.y.z --seconds 20 --flows 4 [--down]

Prints one JSON document: bytes moved, seconds, Mbit/s, and how many flows were reset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

SERVER = "198.18.200.1"
BULK_PORT, TCP_SINK_PORT = 9002, 9003
CHUNK = bytes(256 * 1024)
MAX_BULK = 1 << 40


async def _flow(source: str, down: bool, until: float, done: list[int], resets: list[int],
                i: int) -> None:
    try:
        reader, writer = await asyncio.open_connection(
            SERVER, BULK_PORT if down else TCP_SINK_PORT, local_addr=(source, 0))
    except OSError:
        resets[i] += 1
        return
    try:
        if down:
            writer.write(f"{MAX_BULK}\n".encode())
            await writer.drain()
            while time.monotonic() < until:
                chunk = await asyncio.wait_for(reader.read(1 << 18), 30)
                if not chunk:
                    break
                done[i] += len(chunk)
        else:
            while time.monotonic() < until:
                writer.write(CHUNK)
                await writer.drain()
                done[i] += len(CHUNK)
    except (OSError, TimeoutError):
        resets[i] += 1
    finally:
        writer.close()


async def run(source: str, seconds: float, flows: int, down: bool) -> dict[str, object]:
    done, resets = [0] * flows, [0] * flows
    start = time.monotonic()
    until = start + seconds
    await asyncio.gather(*(_flow(source, down, until, done, resets, i) for i in range(flows)))
    dt = time.monotonic() - start
    return {"source": source, "direction": "down" if down else "up", "flows": flows,
            "bytes": sum(done), "seconds": dt, "mbit_s": sum(done) * 8 / dt / 1e6,
            "resets": sum(resets)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    ap.add_argument("--source", required=True)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--flows", type=int, default=4)
    ap.add_argument("--down", action="store_true")
    args = ap.parse_args(argv)
    json.dump(asyncio.run(run(args.source, args.seconds, args.flows, args.down)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
