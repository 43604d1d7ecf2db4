"""A long fuzzing pass: parse_state in-process, and the protocol against a real helper
in a lab of its own. Prints how many inputs each part tried and how many were refused,
accepted or failed the checks (tests/helper/fuzzing.py says what is checked; the test
suite runs the same checks, bounded).

    python3 -m benchmarks.bench_fuzz [--parse N] [--protocol N] [--seed S]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

from app.lab import topology
from benchmarks.record import Run
from tests.helper.conftest import Helper, lab_name
from tests.helper.fuzzing import check_parse, mutated
from tests.helper.test_helper_fuzz import fuzz_protocol
from tests.helper.test_helper_state import good

LONG = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}


def parse_pass(examples: int, rng: int) -> dict[str, int]:
    counts = {"tried": 0, "refused": 0, "accepted": 0}

    @seed(rng)
    @settings(max_examples=examples, **LONG)
    @given(mutated(good()))
    def one(doc: Any) -> None:
        counts["tried"] += 1
        counts["accepted" if check_parse(doc) is not None else "refused"] += 1

    one()
    return counts


def protocol_pass(examples: int, rng: int) -> int:
    name = lab_name()
    info = topology.build(name, "clean", start_helper=False, write_profile=False)
    tmp = Path(tempfile.mkdtemp(prefix="braid-fuzz-"))
    tmp.chmod(0o755)
    helper = Helper(info, tmp / "helper.sock", tmp / "state", tmp / "helper.log")
    try:
        helper.start()
        return seed(rng)(lambda: fuzz_protocol(helper, examples, **LONG))()
    finally:
        helper.stop()
        helper.cleanup()
        topology.destroy(name, forget_profile=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parse", type=int, default=20000, help="parse_state inputs")
    p.add_argument("--protocol", type=int, default=3000, help="requests to a real helper")
    p.add_argument("--seed", type=int, default=int(time.time()))
    args = p.parse_args()
    t0 = time.monotonic()
    counts = parse_pass(args.parse, args.seed)
    t1 = time.monotonic()
    print(f"parse_state: {counts['tried']} inputs in {t1 - t0:.1f} s "
          f"({counts['refused']} refused with a field error, {counts['accepted']} valid and "
          f"round-tripped, 0 other exceptions); seed {args.seed}")
    tried = protocol_pass(args.protocol, args.seed)
    t2 = time.monotonic()
    print(f"protocol: {tried} requests in {t2 - t1:.1f} s against a real helper: no "
          "internal error, no reply missing, refusals changed nothing, nothing outside "
          "Braid's confinement changed")
    with Run("bench_fuzz", vars(args)) as run:
        run.figures.update({"parse_inputs": counts["tried"], "parse_refused": counts["refused"],
                            "parse_accepted": counts["accepted"], "protocol_requests": tried})


if __name__ == "__main__":
    main()
