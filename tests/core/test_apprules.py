"""Saved app rules: resolved executables, strict reading, atomic writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.core.apprules import AppRule, RuleStore, resolve_app
from app.core.errors import BraidError


def test_pin_unpin_round_trip(tmp_path: Path) -> None:
    store = RuleStore(tmp_path)
    assert store.load() == []
    exe = resolve_app(sys.executable)
    rule, old = store.pin(exe, "realtime")
    assert old is None and store.load() == [rule]
    again, old = store.pin(exe, "bulk", mptcp=True)
    assert old == rule and store.load() == [AppRule(exe, "bulk", True)]
    assert (tmp_path / "rules.toml").stat().st_mode & 0o777 == 0o600
    assert store.unpin(exe) == again and store.load() == []
    assert store.unpin(exe) is None


def test_bad_rules_and_apps_are_refused_with_what_to_do(tmp_path: Path) -> None:
    store = RuleStore(tmp_path)
    with pytest.raises(BraidError, match="not a traffic class"):
        store.pin("/usr/bin/true", "fast")
    with pytest.raises(BraidError, match="mptcp"):
        store.pin("/usr/bin/true", "realtime", mptcp=True)
    with pytest.raises(BraidError, match="no program"):
        resolve_app("no-such-program-here")
    with pytest.raises(BraidError, match="not an executable"):
        resolve_app(str(tmp_path))
    (tmp_path / "rules.toml").write_text('version = 1\n[[rule]]\nexe = "rel/x"\n'
                                         'class = "bulk"\n')
    with pytest.raises(BraidError, match="absolute path"):
        store.load()


def test_a_desktop_entry_names_its_program(tmp_path: Path) -> None:
    entry = tmp_path / "py.desktop"
    entry.write_text(f"[Desktop Entry]\nName=Py\nExec={sys.executable} -m http.server %U\n")
    assert resolve_app(str(entry)) == str(Path(sys.executable).resolve())
