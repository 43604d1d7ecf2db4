"""What classes buy a call while a transfer fills a path: the realtime stream's one-way
delay and loss next to a saturating upload, without classes and with them, same run.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_class_load [--seconds S]

One lab (three paths at 20 Mbit/s with a 100 ms queue each, 15/20/25 ms one way, a
shared exit), the engine connected with its shipped settings. Three phases, each a
call-like stream (100 packets/s of 200 bytes, S seconds):
- **idle**: the stream alone (what the call gets with nothing else running);
- **one class**: the stream and a 6-flow upload, both in the default class (no app
  pinned, no DSCP): they share default's path and its queue, as with any single-path
  VPN;
- **classes**: the stream marked as a call (DSCP EF: realtime by the conferencing
  selectors), the upload started with `braid run --class bulk`: bulk is kept off
  realtime's path, so the call's queue stays its own.
Each flow of the upload moves less than `bulk_after_mb`, so volume makes nothing bulk in
"one class". Prints the stream's figures per phase and the ratios of "classes" to "one
class" and to "idle"; writes them to benchmarks/results/bench_class_load.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.lab import control, stream, topology, transfer
from app.lab.stream import StreamResult
from app.lab.transfer import TransferResult
from benchmarks.enginelab import engine_on_lab, wait_for
from benchmarks.record import Run

SCENARIO = """description = "three 20 Mbit/s paths with a 100 ms queue each"
[[path]]
name = "hk"
delay_ms = 15
rate_mbit = 20
queue_ms = 100
[[path]]
name = "tyo"
delay_ms = 20
rate_mbit = 20
queue_ms = 100
[[path]]
name = "sgp"
delay_ms = 25
rate_mbit = 20
queue_ms = 100
"""
PPS, SIZE, FLOWS = 100, 200, 6


def upload(lab: str, seconds: float, cls: str | None) -> TransferResult:
    """A 6-flow upload that lasts about ``seconds`` on one 20 Mbit/s path, started in
    ``cls`` through `braid run` (None: as any program, in the default class)."""
    size_mb = 2.5 * seconds * 1.2  # 20 Mbit/s is 2.5 MB/s: outlasts the stream
    if cls is None:
        return transfer.transfer(lab, size_mb=size_mb, flows=FLOWS, timeout=seconds * 6)
    argv = [sys.executable, "-m", "app.cli.main", "run", "--lab", lab, "--class", cls, "--",
            *topology.python_argv("app.lab.transfer", "--size", f"{size_mb:g}", "--flows",
                                  str(FLOWS), "--timeout", f"{seconds * 6:g}")]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=topology.python_env())
    return TransferResult.from_json(topology.communicate_json(child, "client", argv,
                                                              seconds * 6 + 30))


def phase(lab: str, seconds: float, *, load: str | None, realtime: bool) -> dict[str, Any]:
    """The stream's figures, with an upload beside it in class ``load`` ("default",
    "bulk") or none."""
    with ThreadPoolExecutor(1) as pool:
        up: Future[TransferResult] | None = None
        if load is not None:
            before = _up_bytes(lab)
            up = pool.submit(upload, lab, seconds, None if load == "default" else load)
            running = up
            wait_for(lambda: running.done() or _queue_filling(lab, before), 20,
                     "the upload to start")
            if up.done():
                up.result()  # it failed: say why
        s: StreamResult = stream.stream(lab, pps=PPS, duration=seconds, size=SIZE,
                                        cls="realtime" if realtime else None)
        t = up.result() if up is not None else None
    d = s.delay_up
    return {"loss_pct": s.loss_pct, "up_loss_pct": s.up_loss_pct,
            "delay_up_mean_ms": d.mean if d else None, "delay_up_p95_ms": d.p95 if d else None,
            "jitter_ms": s.jitter_ms, "upload_mbit_s": t.mbit_s if t else None,
            "upload_completed": t.completed if t else None}


def _queue_filling(lab: str, before: int) -> bool:
    """The paths' uplinks carried 2 MB more than ``before``: the upload is under way."""
    return _up_bytes(lab) > before + 2_000_000


def _up_bytes(lab: str) -> int:
    return sum(int(p["up"]["counters"]["out_bytes"]) for p in control.status(lab)["paths"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="each phase's stream")
    args = parser.parse_args()
    with Run("bench_class_load", vars(args)) as run, tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "loaded.toml"
        scenario.write_text(SCENARIO)
        with engine_on_lab(scenario, exit="shared") as session:
            lab = session.lab.name
            idle = phase(lab, args.seconds, load=None, realtime=False)
            one = phase(lab, args.seconds, load="default", realtime=False)
            both = phase(lab, args.seconds, load="bulk", realtime=True)
        run.figures.update({"idle": idle, "one_class": one, "classes": both})
        for name, f in (("idle", idle), ("one class", one), ("classes", both)):
            print(f"{name:10} one-way up mean {f['delay_up_mean_ms']:.1f} ms, p95 "
                  f"{f['delay_up_p95_ms']:.1f} ms, loss {f['loss_pct']:.2f} %, jitter "
                  f"{f['jitter_ms']:.1f} ms"
                  + (f"; upload {f['upload_mbit_s']:.1f} Mbit/s" if f["upload_mbit_s"] else ""))
        ratio = both["delay_up_mean_ms"] / one["delay_up_mean_ms"]
        over_idle = both["delay_up_mean_ms"] / idle["delay_up_mean_ms"]
        run.figures["delay_ratio_classes_to_one_class"] = ratio
        run.figures["delay_ratio_classes_to_idle"] = over_idle
        print(f"one-way delay, classes / one class: {ratio:.2f}; classes / idle: "
              f"{over_idle:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
