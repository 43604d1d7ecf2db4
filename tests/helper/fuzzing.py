"""Inputs for fuzzing the desired state and the protocol (hypothesis strategies), and
the checks each input must pass. Shared by tests/helper/test_helper_fuzz.py (a bounded
pass) and benchmarks/bench_fuzz.py (a long one).

Most inputs are a good state with one part replaced by something hostile: a value of
another type, a string with a newline, a scope id or a unicode digit, a huge number,
deep nesting, an unknown key. Those reach every validator; wholly random documents
would mostly stop at the first one.
"""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from app.wire.doc import StateError
from app.wire.state import DesiredState, parse_state

HOSTILE_TEXT = [
    "", "\n", "br-x\n", "br-x\r\nremove=true", "0.0.0.0/0", "::/0", "fe80::1%3",
    "[fe80::1%3]:1\nremove=true", "1.2.3.4:²", "²", "٣", "198.19.0.2/24", "127.0.0.1/32",
    "x" * 5000, "default", "br-*", '"; delete table inet braid; "', "\x00", "\ud800",
    "52099", "5298", "lo", "eth0",
]


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, 1, -1, 5290, 5298, 52099, 0x0F000000, 0xFFFFFFFF, 2**32]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40), st.sampled_from(HOSTILE_TEXT),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=5),
                                st.dictionaries(st.text(max_size=10), inner, max_size=5)),
        max_leaves=20,
    )


_JSON = _json_values()  # built once: building a strategy costs more than drawing from it


def json_values() -> st.SearchStrategy[Any]:
    return _JSON


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


_ONE_TO_THREE, _ONE_IN_TEN, _KEY = st.integers(1, 3), st.integers(0, 9), st.text(max_size=12)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """``base`` with one to three parts replaced, or an unknown key added."""
    doc: Any = base
    for _ in range(draw(_ONE_TO_THREE)):
        paths = _paths(doc)
        path = paths[draw(st.integers(0, len(paths) - 1))]
        if draw(_ONE_IN_TEN) == 0 and isinstance(doc, dict):
            doc = _replace(doc, (draw(_KEY),), draw(_JSON))
        else:
            doc = _replace(doc, path, draw(_JSON))
    return doc


def check_parse(doc: Any) -> DesiredState | None:
    """parse_state either refuses with a StateError naming a field, or returns a state
    that round-trips; anything else (another exception) is a bug."""
    try:
        state = parse_state(doc)
    except StateError as exc:
        assert str(exc), "an error must say what is wrong"
        return None
    assert parse_state(json.loads(state.dumps())) == state
    return state


def raw_lines() -> st.SearchStrategy[bytes]:
    """Request lines: random bytes, random JSON, requests with odd fields."""
    requests = st.fixed_dictionaries(
        {"v": st.one_of(st.just(1), json_values()),
         "verb": st.one_of(st.sampled_from(["hello", "status", "apply", "down"]),
                           json_values())},
        optional={"id": json_values(), "state": json_values(), "versions": json_values(),
                  "extra": json_values()},
    )
    return st.one_of(
        st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ") + b"\n"),
        requests.map(lambda d: json.dumps(d).encode() + b"\n"),
        json_values().map(lambda d: json.dumps(d).encode() + b"\n"),
    )


class RawConn:
    """One connection to the helper, speaking lines as they are."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.buf = b""

    def ask(self, line: bytes) -> dict[str, Any] | None:
        """The reply, or None when the helper closed the connection."""
        try:
            self.sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            return None
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        reply, _, self.buf = self.buf.partition(b"\n")
        doc: dict[str, Any] = json.loads(reply)
        return doc

    def close(self) -> None:
        self.sock.close()


def apply_line(state: Any) -> bytes:
    return json.dumps({"v": 1, "verb": "apply", "state": state}).encode() + b"\n"


STATUS = b'{"v": 1, "verb": "status"}\n'


def held(status: dict[str, Any]) -> tuple[Any, ...]:
    """What a status says the helper holds (not counters, not ages)."""
    r = status["result"]
    return (tuple(t["name"] for t in r["tunnels"]), tuple(r["tables"]), r["rules"],
            r["marking"], json.dumps(r.get("guard") and {k: v for k, v in r["guard"].items()
                                                         if k != "dropped_packets"}))
