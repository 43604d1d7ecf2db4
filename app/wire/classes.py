"""Traffic classes by app: the class names, and the arguments of the helper's ``move``
and ``rules`` verbs, validated field by field (docs/helper-protocol.md, "Classes").

Pure, like state.py: the helper parses requests with it, the client builds them. An
executable path in a rule is only ever compared with what the kernel reports for a
process (``/proc/PID/exe``); it never reaches a file operation, nft or a log line
unquoted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from app.wire import doc as d
from app.wire.doc import StateError

REALTIME, BULK, DEFAULT, BYPASS = "realtime", "bulk", "default", "bypass"
# The classes a process can be put in: one cgroup v2 group each under the helper's root.
APP_CLASSES: tuple[str, ...] = (REALTIME, BULK, DEFAULT, BYPASS)
MAX_APP_RULES = 256  # per uid, as many as a user's rules.toml may hold
MAX_MOVE_PIDS = 256
PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT on 64-bit
EXE_MAX = 4095  # PATH_MAX - 1


@dataclass(frozen=True)
class ClassRule:
    """"This program is of that class", for one user: ``exe`` as /proc/PID/exe names it."""

    exe: str
    cls: str
    mptcp: bool = False  # bulk only: the wish for MPTCP (recorded; docs/classes.md)

    def to_json(self) -> dict[str, Any]:
        return {"exe": self.exe, "class": self.cls, "mptcp": self.mptcp}


@dataclass(frozen=True)
class MoveRequest:
    pids: tuple[int, ...]
    cls: str | None  # None: out of Braid's groups, back where the process came from


def check_app_class(value: Any, path: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or value not in APP_CLASSES:
        shown = d.quote(value)
        raise StateError(path, f"{shown} is not a traffic class (one of "
                               f"{', '.join(APP_CLASSES)}{', or null' if nullable else ''})")
    return value


def check_exe(value: Any, path: str) -> str:
    """An absolute, normalised path, as the kernel reports an executable."""
    text = d.string(value, path, EXE_MAX)
    if not text.startswith("/") or "\0" in text or "\n" in text:
        raise StateError(path, "must be an absolute path (as /proc/PID/exe shows it)")
    if os.path.normpath(text) != text:
        raise StateError(path, "must be normalised (no '//', '.', '..' or trailing '/'): "
                               "resolve it first, as `braid pin` does")
    return text


def parse_rules(value: Any, path: str = "rules") -> tuple[ClassRule, ...]:
    def one(doc: Any, where: str) -> ClassRule:
        obj = d.obj(doc, where, {"exe", "class", "mptcp"}, {"exe", "class"})
        exe = check_exe(obj["exe"], f"{where}.exe")
        cls = check_app_class(obj["class"], f"{where}.class")
        assert cls is not None
        mptcp = d.boolean(obj.get("mptcp", False), f"{where}.mptcp")
        if mptcp and cls != BULK:
            raise StateError(f"{where}.mptcp", "MPTCP is for the bulk class only")
        return ClassRule(exe, cls, mptcp)

    rules = d.each(value, path, MAX_APP_RULES, one)
    d.unique([r.exe for r in rules], path, "exe (one rule per program)")
    return rules


def parse_move(args: dict[str, Any]) -> MoveRequest:
    """The arguments of ``move``: ``pids`` (1..256 distinct process ids) and ``class``."""
    obj = d.obj(args, "", {"pids", "class"}, {"pids", "class"})
    pids = d.each(obj["pids"], "pids", MAX_MOVE_PIDS,
                  lambda v, p: d.integer(v, p, 1, PID_MAX), min_len=1)
    d.unique(list(pids), "pids", "pid")
    return MoveRequest(pids, check_app_class(obj["class"], "class", nullable=True))
