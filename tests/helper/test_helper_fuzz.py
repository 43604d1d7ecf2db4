"""Fuzzing, bounded (a few hundred inputs, seconds): parse_state in-process, and the
protocol against a real helper in a lab. No input gets an internal error or a crash, a
refused one changes nothing, and nothing outside Braid's confinement ever changes.
benchmarks/bench_fuzz.py runs the same checks for longer."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helper.conftest import Helper, kernel_dump, lab_state, outside_braid
from tests.helper.fuzzing import (
    STATUS,
    RawConn,
    apply_line,
    check_parse,
    held,
    mutated,
    raw_lines,
)
from tests.helper.test_helper_state import good

SUITE = {"deadline": None, "database": None, "derandomize": True,
         "suppress_health_check": list(HealthCheck)}


def test_parse_state_refuses_or_round_trips_every_input() -> None:
    @settings(max_examples=300, **SUITE)
    @given(st.one_of(mutated(good()), mutated({**good(), "guard": {
        "allow": ["192.168.1.0/24", "fd00::/8"], "via": "br-lab-hk"}})))
    def one(doc: Any) -> None:
        check_parse(doc)

    one()


def fuzz_protocol(helper: Helper, examples: int, **given_settings: Any) -> int:
    """Send ``examples`` hostile requests over the owner's connection; returns how many
    were tried. Shared with benchmarks/bench_fuzz.py."""
    lab = helper.lab
    hk = lab.gateways[0].client_interface
    base = lab_state(lab, ("hk",), guard={"allow": ["192.0.2.0/24"], "via": hk})
    conn = RawConn(helper.socket)
    first = conn.ask(apply_line(base))
    assert first is not None and first["ok"], first
    reply = conn.ask(STATUS)
    assert reply is not None
    base_held = held(reply)
    before = outside_braid(kernel_dump(helper.ns))
    tried = 0

    def reset() -> None:
        nonlocal conn
        conn.close()
        conn = RawConn(helper.socket)
        again = conn.ask(apply_line(base))  # the old owner left: this one takes over
        assert again is not None and again["ok"], again

    @settings(max_examples=examples, **given_settings)
    @given(st.one_of(raw_lines(), mutated(base).map(apply_line)))
    def one(line: bytes) -> None:
        nonlocal tried
        tried += 1
        reply = conn.ask(line)
        assert reply is not None, f"the helper closed without a reply to {line[:200]!r}"
        if not reply["ok"]:
            error = reply["error"]
            assert error["code"] != "internal", (line[:300], error)
            assert error["what"]
            if error["fatal"]:
                reset()
                return
        status = conn.ask(STATUS)
        assert status is not None and status["ok"], status
        if reply["ok"]:
            if held(status) != base_held:  # an input that was a valid state (or down)
                again = conn.ask(apply_line(base))
                assert again is not None and again["ok"], again
        else:
            assert held(status) == base_held, (line[:300], reply["error"])

    try:
        one()
    finally:
        conn.close()
    assert outside_braid(kernel_dump(helper.ns)) == before
    return tried


def test_protocol_fuzz_changes_nothing_it_refuses_and_nothing_outside_braid(
    helper: Helper,
) -> None:
    assert fuzz_protocol(helper, 150, **SUITE) > 0
    assert "internal error" not in helper.log.read_text()
