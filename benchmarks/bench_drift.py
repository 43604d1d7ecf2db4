"""How long the helper takes to repair what someone else deleted (drift), per kind of
deletion, on a lab of its own with a guarded three-tunnel state.

Each deletion is made from inside the client namespace by a probe process that then
polls the kernel (netlink, libnftables) every 5 ms until the object is back;
the figure is from the deletion command's return to the object's return.

    python3 -m benchmarks.bench_drift [--runs N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from app.lab import topology
from benchmarks.record import Run
from tests.helper.conftest import Helper, all_handshaken, lab_name, lab_state
from tests.util import wait_until

_PROBE = r"""
import json, socket, subprocess, sys, time
from pyroute2 import IPRoute
from app.helper import nft
fault, iface, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ipr = IPRoute()

def rule_back():
    return any(r.get("priority") == 5298 for r in ipr.get_rules(family=socket.AF_INET))

def tables_back():
    return nft.listing("inet braid") is not None and nft.listing("inet braid_guard") is not None

def marking_back():
    return nft.listing("inet braid") is not None

def link_back():
    idx = ipr.link_lookup(ifname=iface)
    if not idx:
        return False
    link = ipr.get_links(idx[0])[0]
    addrs = [a for a in ipr.get_addr(index=idx[0]) if a.get("address")]
    routes = ipr.route("dump", table=52001)
    return bool(link["flags"] & 1) and addrs and any(r.get("oif") == idx[0] for r in routes)

faults = {
    "ip rule del 5298": (["ip", "rule", "del", "priority", "5298"], rule_back),
    "nft flush ruleset": (["nft", "flush", "ruleset"], tables_back),
    "nft delete table inet braid": (["nft", "delete", "table", "inet", "braid"], marking_back),
    "ip link del (tunnel)": (["ip", "link", "del", iface], link_back),
}
argv, back = faults[fault]
out = []
for _ in range(runs):
    deadline = time.monotonic() + 10
    while not back():  # the previous run's repair (and handshake) settles first
        time.sleep(0.01)
    time.sleep(0.3)
    subprocess.run(argv, check=True)
    t0 = time.monotonic()
    while not back():
        if time.monotonic() - t0 > 10:
            out.append(None)
            break
        time.sleep(0.005)  # a probe polling harder takes the CPU the repair needs
    else:
        out.append((time.monotonic() - t0) * 1000)
print(json.dumps(out))
"""

FAULTS = ("ip rule del 5298", "nft flush ruleset", "nft delete table inet braid",
          "ip link del (tunnel)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=11)
    p.add_argument("--log", action="store_true", help="print the helper's drift lines")
    args = p.parse_args()
    name = lab_name()
    info = topology.build(name, "clean", start_helper=False, write_profile=False)
    tmp = Path(tempfile.mkdtemp(prefix="braid-drift-"))
    tmp.chmod(0o755)
    helper = Helper(info, tmp / "helper.sock", tmp / "state", tmp / "helper.log",
                    extra=("-v",) if args.log else ())
    try:
        helper.start()
        client = helper.client()
        hk = info.gateways[0].client_interface
        client.apply(lab_state(info, guard={"allow": ["192.0.2.0/24"], "via": hk}))
        names = [g.client_interface for g in info.gateways]
        wait_until(lambda: all_handshaken(client.status(), names), 15)
        print(f"repair after a deletion, ms (median, max of {args.runs}; from the command's "
              "return to the object's return)")
        repairs: dict[str, dict[str, float | int]] = {}
        for fault in FAULTS:
            done = subprocess.run(
                ["ip", "netns", "exec", helper.ns, sys.executable, "-c", _PROBE, fault, hk,
                 str(args.runs)], capture_output=True, text=True, check=True,
                cwd=Path(__file__).resolve().parents[1])  # fmt: skip
            times = json.loads(done.stdout)
            ok = [t for t in times if t is not None]
            lost = len(times) - len(ok)
            print(f"  {fault:30s} median {statistics.median(ok):7.1f}  max {max(ok):7.1f}"
                  + (f"  ({lost} not repaired within 10 s)" if lost else ""))
            repairs[fault] = {"median_ms": statistics.median(ok), "max_ms": max(ok),
                              "not_repaired": lost}
        with Run("bench_drift", vars(args)) as run:
            run.figures.update(repairs)
        if args.log:
            for line in helper.log.read_text().splitlines():
                if "drift" in line or "repair" in line or "events" in line:
                    print(line[:160])
    finally:
        helper.stop()
        helper.cleanup()
        topology.destroy(name, forget_profile=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
