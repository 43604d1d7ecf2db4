"""Traffic classes by app: how soon a saved rule puts a starting program in its class,
how often its first socket is already in it, and what the class rules cost a switch.

Builds its own lab (a fresh name) and runs braid-helper in its client namespace with a
state holding three classes and the volume rule. Then:
  - rule -> class: a saved rule names a program of the benchmark's own (a copy of bash,
    then of Python, so nothing else on the machine matches); the program is started
    ``--starts`` times, from inside the lab's namespace (fork + exec, no `ip netns
    exec` in between). Each start opens a UDP socket and sends one packet first thing;
    the launcher polls the child's /proc/PID/cgroup from the moment it forked it (every
    0.5 ms: a busy loop would take the CPU the helper needs on a small machine).
    Figures: the time from the fork to the child being in the class (median, p90,
    worst; starts that ended before it was seen there are counted as misses), the
    share of first sockets that got the class, as nft counted their packets (the
    kernel's word: `app_bulk` vs `default`), and the helper's own account (its log at
    -v) of each move: from the exec event's kernel timestamp to seeing it, and to the
    move done;
  - switches: apply -> reply for class default moving between two paths, with only
    default in the marking and with realtime, bulk, default and the volume rule; and
    the nft load alone, in-process, of the table without and with the class rules.
Prints figures, asserts nothing. Run as root: python3 -m benchmarks.bench_classes
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.core.helper_client import SyncHelperClient
from app.core.netns import CLONE_NEWNET, _libc, enter_netns
from app.lab import topology
from benchmarks.record import Run
from tests.helper.conftest import REPO, all_handshaken, lab_state

# Each opens a UDP socket and sends one packet first thing, then lingers a moment (so
# the launcher can see it in its class before it exits).
BASH_APP = "exec 3<>/dev/udp/{server}/9001; printf x >&3; read -t 0.05 -u 3"
PY_APP = """
import socket, sys, time
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (sys.argv[1], 9001))
time.sleep(0.05)
"""


POLL_S = 0.0005
# The helper's own account (at -v) of each move a rule made, from the exec event's time.
MOVED = re.compile(r"moved to bulk ([0-9.]+) ms after its exec \(seen after ([0-9.]+) ms\)")


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def line(name: str, ms: list[float]) -> str:
    return (f"{name:<44} median {statistics.median(ms):7.2f} ms   p90 {pct(ms, 0.9):7.2f}   "
            f"worst {max(ms):7.2f}   (n={len(ms)})")


def flows(client: SyncHelperClient) -> dict[str, int]:
    status = client.status()
    return dict(status.classes.flows) if status.classes else {}


def starts(client: SyncHelperClient, argv: list[str], n: int) -> tuple[list[float], int, int]:
    """``n`` starts of ``argv`` (in this namespace); times to class (ms) and how many
    first sockets were classified bulk, default."""
    before = flows(client)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        child = subprocess.Popen(argv)
        where = f"/proc/{child.pid}/cgroup"
        while child.poll() is None:
            try:
                with open(where) as f:
                    if "braid/bulk" in f.read().splitlines()[-1]:
                        times.append((time.perf_counter() - t0) * 1000)
                        break
            except (OSError, IndexError):
                pass
            time.sleep(POLL_S)  # not a busy loop: the helper needs the CPU it would take
        child.wait(30)
    after = flows(client)
    return (times, after.get("app_bulk", 0) - before.get("app_bulk", 0),
            after.get("default", 0) - before.get("default", 0))


def with_classes(info: topology.LabInfo, doc: dict[str, Any]) -> dict[str, Any]:
    """Every gateway's mark rules; realtime on hk, bulk on sgp, default on tyo."""
    marks = {g.name: (g.index + 1) << 24 for g in info.gateways}
    doc = copy.deepcopy(doc)
    doc["rules"] = [r for r in doc["rules"] if r["fwmark"] is None]
    for g in info.gateways:
        for prio, action in ((5250 + 2 * g.index, "lookup"), (5251 + 2 * g.index,
                                                              "unreachable")):
            doc["rules"].append({"priority": prio, "src": None, "fwmark": marks[g.name],
                                 "fwmask": 0x0F000000, "action": action,
                                 "table": 52001 + g.index if action == "lookup" else None})
    doc["marking"]["classes"] = [{"name": "realtime", "mark": marks["hk"]},
                                 {"name": "bulk", "mark": marks["sgp"]},
                                 {"name": "default", "mark": marks["tyo"]}]
    doc["marking"]["bulk_after_bytes"] = 50_000_000
    return doc


def switches(client: SyncHelperClient, state: dict[str, Any], runs: int) -> list[float]:
    """apply -> reply, class default between tyo and hk."""
    moved = copy.deepcopy(state)
    default = next(c for c in moved["marking"]["classes"] if c["name"] == "default")
    default["mark"] = 0x01000000 if default["mark"] != 0x01000000 else 0x02000000
    out = []
    client.apply(state)
    for _ in range(runs):
        for target in (moved, state):
            t0 = time.perf_counter()
            client.apply(target)
            out.append((time.perf_counter() - t0) * 1000)
    return out


_LOADS = r"""
import statistics, sys, time
from app.helper import cgroups, nft
from app.wire.state import Marking, MarkClass
view = cgroups.open_view()
groups = cgroups.Groups(view, "braid-bench-" + sys.argv[1])
groups.ensure()
alone = Marking(0x0F000000, (MarkClass("default", 0x02000000),), True, ())
full = Marking(0x0F000000, (MarkClass("default", 0x02000000), MarkClass("realtime", 0x01000000),
                            MarkClass("bulk", 0x03000000)), True, (), 50_000_000)
table = "inet braidbench"
out = {}
for name, marking, g in (("default alone, no class rules", alone, None),
                         ("all class rules", full, (groups.nft_paths(), groups.level))):
    loads, lists = [], []
    for i in range(int(sys.argv[2])):
        text = nft.render(marking, ["br-a", "br-b", "br-c"], ["192.168.1.0/24"], g,
                          ["198.19.0.2/32"]).replace("inet braid ", table + " ")
        text = text.replace("0x02000000", ("0x02000000", "0x04000000")[i % 2])
        t0 = time.perf_counter()
        with groups.for_nft():
            nft.load(text, table)
        t1 = time.perf_counter()
        nft.listing(table)
        loads.append((t1 - t0) * 1000)
        lists.append((time.perf_counter() - t1) * 1000)
    print(name.replace(" ", "_"), statistics.median(loads), max(loads),
          statistics.median(lists))
    if g is not None:  # a switch as the helper does it now: only the marks' chains
        ups = []
        for i in range(int(sys.argv[2])):
            new = text.replace(("0x02000000", "0x04000000")[i % 2],
                               ("0x04000000", "0x02000000")[i % 2])
            commands = nft.mark_update(text, new, table)
            t0 = time.perf_counter()
            nft.update(commands, table)
            ups.append((time.perf_counter() - t0) * 1000)
            text = new
        print("switch:_marks_only,_all_class_rules", statistics.median(ups), max(ups), 0.0)
nft.delete(table)
groups.remove(lambda pid: "")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=200, help="program starts per kind")
    parser.add_argument("--runs", type=int, default=30, help="switches per state")
    args = parser.parse_args()
    lab = "b" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4))
    info = topology.build(lab, "clean", start_helper=False, write_profile=False)
    ns = topology.netns(lab, "client")
    work = Path(tempfile.mkdtemp(prefix="braid-bench-"))
    os.chmod(work, 0o755)
    sock = work / "helper.sock"
    bash, python = work / "bench-bash", work / "bench-python"
    shutil.copy(shutil.which("bash") or "/bin/bash", bash)
    shutil.copy(os.path.realpath(sys.executable), python)
    with open(work / "helper.log", "wb") as log:
        helper = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "app.helper.main",
             "--socket", str(sock), "--state-dir", str(work / "state"), "-v"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    results: dict[str, tuple[list[float], int, int]] = {}
    try:
        deadline = time.monotonic() + 15
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        client = SyncHelperClient(sock)
        plain = lab_state(info)
        full = with_classes(info, plain)
        client.apply(full)
        names = [g.client_interface for g in info.gateways]
        deadline = time.monotonic() + 20
        while not all_handshaken(client.status(), names) and time.monotonic() < deadline:
            time.sleep(0.05)
        client.request("rules", rules=[{"exe": str(bash), "class": "bulk"},
                                       {"exe": str(python), "class": "bulk"}])
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        enter_netns(ns)  # the programs start here, from this process (fork + exec)
        try:
            server = info.server_address
            results["bash"] = starts(client, [str(bash), "--norc", "--noprofile", "-c",
                                              BASH_APP.format(server=server)], args.starts)
            results["python"] = starts(client, [str(python), "-c", PY_APP, server],
                                       args.starts)
        finally:
            # Back home: destroying the lab stops every process left in its namespaces.
            _libc.setns(home, CLONE_NEWNET)
            os.close(home)
        sw_plain = switches(client, plain, args.runs)
        sw_full = switches(client, full, args.runs)
        client.close()
        loads = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _LOADS, lab,
                                str(args.runs * 2)], capture_output=True, text=True,
                               check=True, cwd=REPO).stdout  # fmt: skip
    finally:
        helper.terminate()
        helper.wait(30)
        topology.destroy(lab, forget_profile=False)
        moves = MOVED.findall((work / "helper.log").read_text())
        shutil.rmtree(work, ignore_errors=True)
    with Run("bench_classes", vars(args)) as run:
        for kind, (times, in_class, default) in results.items():
            run.figures[kind] = {"to_class_ms": statistics.median(times),
                                 "to_class_p90_ms": pct(times, 0.9),
                                 "to_class_worst_ms": max(times), "first_in_class": in_class,
                                 "first_sockets": in_class + default}
        if moves:
            run.figures["helper"] = {
                "seen_ms": statistics.median([float(m[1]) for m in moves]),
                "moved_ms": statistics.median([float(m[0]) for m in moves]),
                "moved_p90_ms": pct([float(m[0]) for m in moves], 0.9)}
        run.figures["switch_ms"] = {"default_alone": statistics.median(sw_plain),
                                    "classes": statistics.median(sw_full)}
        for row in loads.strip().splitlines():
            name, median, _worst, listing = row.split()
            run.figures.setdefault("nft", {})[name] = {"load_ms": float(median),
                                                       "listing_ms": float(listing)}
    print(f"classes by app, lab {lab}, load average {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} cores)")
    for kind, (times, in_class, default) in results.items():
        print(line(f"{kind}: fork -> in its class (saved rule)", times)
              + f"  seen in class: {len(times)} of {args.starts}")
        total = in_class + default
        print(f"{kind}: first sockets in the class: {in_class} of {total} "
              f"({100 * in_class / max(total, 1):.0f} %)")
    if moves:
        print(line("helper: exec -> event seen", [float(m[1]) for m in moves]))
        print(line("helper: exec -> moved (rule)", [float(m[0]) for m in moves]))
    print(line("switch, default alone (apply -> reply)", sw_plain))
    print(line("switch, 3 classes + volume (apply -> reply)", sw_full))
    print(f"  ratio {statistics.median(sw_full) / statistics.median(sw_plain):.2f}x")
    for row in loads.strip().splitlines():
        name, median, worst, listing = row.split()
        print(f"nft, {name.replace('_', ' '):<39} median {float(median):6.2f} ms   worst "
              f"{float(worst):6.2f}   then its listing {float(listing):5.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
