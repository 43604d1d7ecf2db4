"""Saved rules "this app is of that class" (zoom is realtime, rsync is bulk), in the
user's config: ``<config dir>/rules.toml``, written atomically, read strictly.

An app is named by its executable's absolute path (what the kernel reports for a process
as /proc/PID/exe, so a rule matches exactly the program the user picked, not anything
named alike). The engine hands the rules to the helper, which applies them as matching
processes of this user start (docs/classes.md).
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from app.core.errors import BraidError
from app.wire.classes import APP_CLASSES, MAX_APP_RULES
from app.wire.files import write_atomically

RULES_VERSION = 1
MAX_RULES = MAX_APP_RULES


@dataclass(frozen=True)
class AppRule:
    exe: str  # absolute path of the executable, symlinks resolved
    cls: str  # one of APP_CLASSES
    mptcp: bool = False  # bulk only: one flow over every path (docs/multipath.md)


def check_class(cls: str) -> str:
    if cls not in APP_CLASSES:
        raise BraidError(f"{cls!r} is not a traffic class",
                         f"use one of: {', '.join(APP_CLASSES)}")
    return cls


def resolve_app(app: str) -> str:
    """The executable ``app`` names: a path (symlinks resolved, as /proc/PID/exe shows
    it), or a command found on PATH; a .desktop file gives its Exec's program."""
    if app.endswith(".desktop"):
        app = _desktop_exec(Path(app))
    path = Path(app) if "/" in app else (Path(found) if (found := shutil.which(app))
                                         else None)
    if path is None or not path.exists():
        raise BraidError(f"no program {app!r} found",
                         "give its full path (e.g. /usr/bin/zoom) or a command on PATH")
    real = path.resolve()
    if not real.is_file() or not os.access(real, os.X_OK):
        raise BraidError(f"{real} is not an executable program",
                         "pin the program itself, not a folder or a data file")
    return str(real)


def _desktop_exec(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BraidError(f"cannot read {path}: {exc}",
                         "give the .desktop file's path, e.g. "
                         "/usr/share/applications/zoom.desktop") from None
    for line in text.splitlines():
        if line.startswith("Exec="):
            words = line[5:].split()
            if words:
                return words[0]
    raise BraidError(f"{path} has no Exec= line", "pin the program it starts instead")


class RuleStore:
    def __init__(self, config_dir: Path | None = None) -> None:
        env = os.environ.get("BRAID_CONFIG_DIR")
        self.dir = config_dir or (Path(env) if env else
                                  Path(platformdirs.user_config_dir("braid")))
        self.path = self.dir / "rules.toml"

    def load(self) -> list[AppRule]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise BraidError(f"cannot read {self.path}: {exc}", "check the file") from None
        try:
            return _parse(tomllib.loads(text), self.path)
        except tomllib.TOMLDecodeError as exc:
            raise BraidError(f"{self.path} is not valid TOML: {exc}",
                             "fix it, or remove it to start without rules") from None

    def save(self, rules: Iterable[AppRule]) -> None:
        items = list(rules)
        if len(items) > MAX_RULES:
            raise BraidError(f"{len(items)} rules; Braid keeps at most {MAX_RULES}",
                             "remove some with `braid unpin`")
        doc: dict[str, Any] = {"version": RULES_VERSION, "rule": [
            {"exe": r.exe, "class": r.cls, **({"mptcp": True} if r.mptcp else {})}
            for r in items]}
        write_atomically(self.path, "# Braid: which app is of which traffic class "
                         "(docs/classes.md)\n" + tomli_w.dumps(doc))

    def pin(self, exe: str, cls: str, *, mptcp: bool = False) -> tuple[AppRule, AppRule | None]:
        """Add or replace the rule for ``exe``; returns it and the one it replaced."""
        rule = AppRule(exe, check_class(cls), mptcp)
        if mptcp and cls != "bulk":
            raise BraidError("--mptcp is for the bulk class", "pin it as bulk, or drop --mptcp")
        rules = self.load()
        old = next((r for r in rules if r.exe == exe), None)
        self.save([r for r in rules if r.exe != exe] + [rule])
        return rule, old

    def unpin(self, exe: str) -> AppRule | None:
        rules = self.load()
        old = next((r for r in rules if r.exe == exe), None)
        if old is not None:
            self.save([r for r in rules if r.exe != exe])
        return old


def _parse(doc: dict[str, Any], path: Path) -> list[AppRule]:
    if doc.get("version") != RULES_VERSION:
        raise BraidError(f"{path}: version {doc.get('version')!r} is not {RULES_VERSION}",
                         "remove the file to start without rules")
    unknown = set(doc) - {"version", "rule"}
    if unknown:
        raise BraidError(f"{path}: unknown key {sorted(unknown)[0]!r}", "remove it")
    rules = doc.get("rule", [])
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise BraidError(f"{path}: rule must be a list of at most {MAX_RULES} tables",
                         "write [[rule]] tables")
    out: list[AppRule] = []
    for i, r in enumerate(rules):
        where = f"{path}: rule {i + 1}"
        if not isinstance(r, dict) or set(r) - {"exe", "class", "mptcp"}:
            raise BraidError(f"{where}: has keys other than exe, class, mptcp", "fix it")
        exe, cls, mptcp = r.get("exe"), r.get("class"), r.get("mptcp", False)
        if not isinstance(exe, str) or not exe.startswith("/"):
            raise BraidError(f"{where}: exe must be an absolute path", "fix it")
        if not isinstance(cls, str) or not isinstance(mptcp, bool):
            raise BraidError(f"{where}: class must be a string, mptcp true or false",
                             "fix it")
        check_class(cls)
        out.append(AppRule(exe, cls, mptcp))
    exes = [r.exe for r in out]
    if len(set(exes)) != len(exes):
        dup = next(e for e in exes if exes.count(e) > 1)
        raise BraidError(f"{path}: two rules for {dup}", "keep one")
    return [replace(r) for r in out]
