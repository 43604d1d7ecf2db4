"""Which tunnel a program's traffic crosses, for the classes' tests and benchmark: a
sender that opens a fresh UDP socket per burst (so a move between bursts shows), and
each tunnel's interface counters in the lab's client namespace."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence

from tests.faults import ns_run
from tests.util import wait_until

BURST = 300

# Sends ``count`` datagrams from a fresh socket each time it reads a line ("ef": with
# DSCP EF), and says which cgroup v2 group it was in when it opened that socket.
SENDER = r"""
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
for line in sys.stdin:
    where = [l for l in open("/proc/self/cgroup") if l.startswith("0::")][0].strip()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if line.strip() == "ef":
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 46 << 2)
    for _ in range(count):
        s.sendto(b"braid-class-test", (host, port))
    s.close()
    print(where, flush=True)
"""


@contextlib.contextmanager
def sender(ns: str, host: str, port: int = 9001, count: int = BURST,
           prefix: Sequence[str] = (), program: str = sys.executable,
           ) -> Iterator[subprocess.Popen[str]]:
    """The sender in network namespace ``ns``; ``prefix``: what starts it (``braid run
    ...``, which enters the namespace itself: then ``ns`` is not entered here)."""
    where = list(prefix) if prefix else ["ip", "netns", "exec", ns]
    child = subprocess.Popen([*where, program, "-c", SENDER, host, str(port), str(count)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready", \
            "the sender did not start"
        yield child
    finally:
        child.kill()
        child.wait()


def send(child: subprocess.Popen[str], word: str = "go") -> str:
    """One burst from a fresh socket; the group the sender was in when it opened it."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(word + "\n")
    child.stdin.flush()
    return child.stdout.readline().strip()


def tx(ns: str, iface: str) -> int:
    """Packets sent into a tunnel (its interface counter)."""
    out = json.loads(ns_run(ns, "ip", "-j", "-s", "link", "show", "dev", iface))
    return int(out[0]["stats64"]["tx"]["packets"])


def txs(ns: str, tunnels: dict[str, str]) -> dict[str, int]:
    return {path: tx(ns, name) for path, name in tunnels.items()}


def carried_by(ns: str, tunnels: dict[str, str], child: subprocess.Popen[str],
               word: str = "go", count: int = BURST) -> str:
    """Which tunnel (path -> interface in ``tunnels``) a burst of ``child`` crossed: it
    alone grew by the burst; the others by at most a few probes or keepalives."""
    before = txs(ns, tunnels)
    send(child, word)
    after = wait_until(lambda: (a := txs(ns, tunnels)) and max(
        a[k] - before[k] for k in a) >= count and a, 10, message="the burst went nowhere")
    grew = {k: after[k] - before[k] for k in after}
    best = max(grew, key=lambda k: grew[k])
    assert all(v < count // 3 for k, v in grew.items() if k != best), grew
    return best
