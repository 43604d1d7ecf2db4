"""Every benchmark at its full length, one after the other, then the figures tables.

As root, with a keyring, on a quiet machine (each writes benchmarks/results/NAME.json):
    bash scripts/with-keyring.sh python3 -m benchmarks.run_all [--quick] [--only a,b]

``--quick`` runs each one short, to check that they work (figures from it are not
worth publishing: the JSON says how long each ran). About 75 minutes in full.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.record import ROOT

# (benchmark, full arguments, quick arguments)
ALL = [
    ("bench_tunnels", ["--runs", "7"], ["--runs", "2"]),
    ("bench_drift", ["--runs", "11"], ["--runs", "2"]),
    ("bench_classes", ["--starts", "200", "--runs", "30"], ["--starts", "10", "--runs", "3"]),
    ("bench_class_load", ["--seconds", "30"], ["--seconds", "8"]),
    ("bench_fuzz", [], ["--parse", "500", "--protocol", "100"]),
    ("bench_faults", ["--seconds", "12"], ["--seconds", "6"]),
    ("bench_relay", ["--runs", "3"], ["--runs", "1", "--size", "5"]),
    ("bench_switchover", ["--runs", "5"], ["--runs", "1"]),
    ("bench_loss_episode", ["--runs", "3"], ["--runs", "1"]),
    ("bench_engine_cost", ["--seconds", "60"], ["--seconds", "10"]),
    ("bench_user_view", ["--seconds", "90"], ["--seconds", "15"]),
    ("bench_aggregation", ["--runs", "3"], ["--runs", "1", "--size", "10"]),
    ("bench_copies", ["--runs", "3"], ["--runs", "1"]),
    ("bench_flaps", ["--minutes", "10"], ["--minutes", "2"]),
    ("bench_false_alarms", ["--minutes", "10"], ["--minutes", "1.5"]),
    ("bench_ui", ["--rounds", "3"], ["--rounds", "1"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated benchmark names")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    failed = []
    for name, full, quick in ALL:
        if only is not None and name not in only:
            continue
        argv = [sys.executable, "-m", f"benchmarks.{name}", *(quick if args.quick else full)]
        print(f"== {' '.join(argv[2:])}", flush=True)
        t0 = time.monotonic()
        if subprocess.run(argv, cwd=ROOT).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.monotonic() - t0:.0f} s", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "figures.py")], check=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
