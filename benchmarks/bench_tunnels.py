"""How fast braid-helper brings three lab tunnels up and takes them down.

Builds its own lab (a fresh name, no helper of the lab's own), starts braid-helper in
the lab's client namespace and, over several runs, times:
  - apply -> all three tunnels handshaken (status polled every 5 ms),
  - apply -> the helper's reply (the part the helper itself spends),
  - down  -> no br-* link, no wireguard-go process left in the namespace,
and, as the baseline in the same run, one tunnel alone (apply -> handshaken), so the
cost of three at once is printed as a ratio to one. Then, with the three up, the cost
of a switch: an apply that moves class default to another path (what the
engine sends on failover: class default takes another path's mark, so the nft table is
reloaded), without and with a conntrack flush of the old path's mark; and a rules-only
switch (the class's lookup rule pointed at another path's table, nothing else).
Prints each figure's median, min and max. Run as root: python3 -m benchmarks.bench_tunnels
"""

from __future__ import annotations

import argparse
import copy
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app.core.helper_client import SyncHelperClient
from app.lab import topology
from benchmarks.record import Run
from tests.helper.conftest import REPO, all_handshaken, lab_state, ns_run, wireguard_go_in


def braid_links(ns: str) -> list[str]:
    out = ns_run(ns, "ip", "-o", "link", "show")
    return [line.split(":")[1].strip() for line in out.splitlines() if ": br-" in line]


def poll(cond: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.005)


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<28} median {statistics.median(ms):8.1f} ms   "
        f"min {min(ms):8.1f}   max {max(ms):8.1f}   (n={len(ms)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    lab = "b" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4))
    info = topology.build(lab, "clean", start_helper=False, write_profile=False)
    ns = topology.netns(lab, "client")
    work = Path(tempfile.mkdtemp(prefix="braid-bench-"))
    sock = work / "helper.sock"
    with open(work / "helper.log", "wb") as log:
        helper = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "app.helper.main",
             "--socket", str(sock), "--state-dir", str(work / "state")],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    names = [g.client_interface for g in info.gateways]
    reply: list[float] = []
    handshaken: list[float] = []
    gone: list[float] = []
    single: list[float] = []
    switch: list[float] = []
    switch_flush: list[float] = []
    switch_rules: list[float] = []
    try:
        poll(sock.exists, 15)
        client = SyncHelperClient(sock)
        client.hello()
        state = lab_state(info)
        one = lab_state(info, (info.gateways[0].name,))
        for _ in range(args.runs):
            t0 = time.monotonic()
            client.apply(state)
            reply.append(time.monotonic() - t0)
            poll(lambda: all_handshaken(client.status(), names))
            handshaken.append(time.monotonic() - t0)
            t0 = time.monotonic()
            client.down()
            poll(lambda: not braid_links(ns) and not wireguard_go_in(ns))
            gone.append(time.monotonic() - t0)
            t0 = time.monotonic()
            client.apply(one)
            poll(lambda: all_handshaken(client.status(), names[:1]))
            single.append(time.monotonic() - t0)
            client.down()
            poll(lambda: not braid_links(ns) and not wireguard_go_in(ns))
        # As the engine switches: every path has its mark rules; the class's mark moves.
        both = copy.deepcopy(state)
        both["rules"] += [
            {"priority": 5252, "src": None, "fwmark": 0x02000000, "fwmask": 0x0F000000,
             "action": "lookup", "table": 52002},
            {"priority": 5253, "src": None, "fwmark": 0x02000000, "fwmask": 0x0F000000,
             "action": "unreachable", "table": None},
        ]  # fmt: skip
        state = both
        client.apply(state)
        moved = copy.deepcopy(state)
        moved["marking"]["classes"][0]["mark"] = 0x02000000  # default: hk -> tyo
        flushed = copy.deepcopy(moved)
        flushed["marking"]["flush_marks"] = [0x01000000]
        rules_only = copy.deepcopy(state)
        for rule in rules_only["rules"]:
            if rule["priority"] == 5250:  # class default's lookup rule: hk -> tyo's table
                rule["table"] = 52002
        for _ in range(args.runs * 3):
            for target, out in (
                (moved, switch), (flushed, switch_flush), (rules_only, switch_rules)
            ):  # fmt: skip
                t0 = time.monotonic()
                client.apply(target)
                out.append(time.monotonic() - t0)
                client.apply(state)
        client.close()
    finally:
        helper.terminate()
        helper.wait(30)
        topology.destroy(lab, forget_profile=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"braid-helper, {len(names)} tunnels (wireguard-go), lab {lab}, {args.runs} runs")
    print(summary("apply -> helper replied", reply))
    print(summary("apply -> all handshaken", handshaken))
    print(summary("down -> all gone", gone))
    print(summary("baseline: 1 tunnel handshaken", single))
    print(summary("switch (nft reload)", switch))
    print(summary("switch + conntrack flush", switch_flush))
    print(summary("rules-only switch", switch_rules))
    print(
        f"3 tunnels at once vs 1 alone: "
        f"{statistics.median(handshaken) / statistics.median(single):.2f}x"
    )
    with Run("bench_tunnels", vars(args)) as run:
        for key, values in (("reply_ms", reply), ("handshaken_ms", handshaken),
                            ("gone_ms", gone), ("single_handshaken_ms", single),
                            ("switch_ms", switch), ("switch_flush_ms", switch_flush),
                            ("switch_rules_ms", switch_rules)):
            run.figures[key] = statistics.median(values) * 1000
    return 0


if __name__ == "__main__":
    sys.exit(main())
