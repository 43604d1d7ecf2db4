"""Braid's log file (app/core/logs.py) and `--version`, as real processes see them."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import logs
from app.wire.version import package_version
from tests.util import root_logging_restored

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh XDG_STATE_HOME; the root logger's handlers and levels restored after."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    with root_logging_restored():
        yield home


def run(*argv: str, env: dict[str, str] | None = None,
        module: str = "app.cli.main") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True,
                          text=True, env=env or dict(os.environ), cwd=REPO, timeout=60)


def test_the_file_is_in_the_state_dir_private_and_at_info(state_home: Path) -> None:
    path = logs.setup()
    assert path == state_home / "braid" / "braid.log" == logs.log_path()
    logging.getLogger("braid.test").debug("a debug line")
    logging.getLogger("braid.test").info("an info line")
    text = path.read_text()
    assert "braid.test INFO an info line" in text and "a debug line" not in text
    assert f"[{os.getpid()}]" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_verbose_logs_debug_but_pyroute2_stays_quiet(state_home: Path) -> None:
    """pyroute2's debug output is whole netlink messages, WireGuard keys included."""
    path = logs.setup(verbose=True)
    assert path is not None
    logging.getLogger("braid.test").debug("a debug line")
    logging.getLogger("pyroute2.netlink").debug("nlmsg with a private key")
    logging.getLogger("pyroute2").info("pyroute2 info")
    text = path.read_text()
    assert "a debug line" in text
    assert "private key" not in text and "pyroute2 info" not in text


def test_braid_verbose_in_the_environment_is_verbose(state_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """How a background engine started from a verbose shell inherits the choice."""
    monkeypatch.setenv(logs.VERBOSE_ENV, "1")
    path = logs.setup()
    assert path is not None
    logging.getLogger("braid.test").debug("inherited debug")
    assert "inherited debug" in path.read_text()


def test_calling_setup_again_replaces_its_handlers(state_home: Path) -> None:
    logs.setup()
    logs.setup()
    path = logs.setup()
    assert path is not None
    logging.getLogger("braid.test").warning("once")
    assert path.read_text().count("once") == 1


def test_stderr_gets_warnings_only(state_home: Path) -> None:
    code = ("import logging; from app.core import logs; logs.setup(); "
            "logging.getLogger('braid.x').info('quiet info'); "
            "logging.getLogger('braid.x').warning('loud warning')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=30)
    assert done.returncode == 0
    assert "loud warning" in done.stderr and "quiet info" not in done.stderr
    text = (state_home / "braid" / "braid.log").read_text()
    assert "quiet info" in text and "loud warning" in text


def test_unwritable_state_dir_warns_once_and_braid_still_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state dir should be")
    env = {**os.environ, "XDG_STATE_HOME": str(blocker)}
    done = run("profiles", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("braid: warning: no log file: cannot write") == 1
    assert str(blocker / "braid" / "braid.log") in done.stderr


def test_rotation_keeps_two_backups_all_private(tmp_path: Path) -> None:
    path = tmp_path / "braid.log"
    handler = logs.SharedRotatingFileHandler(path, maxBytes=1000, backupCount=2,
                                             encoding="utf-8")
    logger = logging.getLogger("braid.rotation-test")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(200):
            logger.warning("line %03d %s", i, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["braid.log", "braid.log.1", "braid.log.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 1000
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "line 199" in path.read_text()


def test_a_process_follows_a_rotation_done_by_another(tmp_path: Path) -> None:
    """Two handlers on one path stand for the tray app and a background engine: after
    one rotates, the other's next line goes to the new braid.log, not into .1."""
    path = tmp_path / "braid.log"
    a = logs.SharedRotatingFileHandler(path, maxBytes=10_000, backupCount=2)
    b = logs.SharedRotatingFileHandler(path, maxBytes=10_000, backupCount=2)
    record = logging.LogRecord("braid.x", logging.INFO, __file__, 1, "%s", ("m",), None)
    try:
        a.emit(record)
        b.doRollover()
        record.args = ("after the rotation",)
        a.emit(record)
    finally:
        a.close()
        b.close()
    assert "after the rotation" in path.read_text()
    assert "after the rotation" not in (tmp_path / "braid.log.1").read_text()


def test_read_tail_is_bounded_and_starts_at_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "braid.log"
    path.write_text("".join(f"line {i:05d}\n" for i in range(10_000)))
    tail = logs.read_tail(path, max_bytes=1000)
    assert len(tail) <= 1000
    assert tail.startswith("line ") and tail.endswith("line 09999\n")
    assert logs.read_tail(tmp_path / "absent.log") == ""


def test_version_is_pyprojects_everywhere() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    assert package_version() == expected
    braid = run("--version")
    assert braid.returncode == 0 and braid.stdout == f"braid {expected}\n"
    helper = run("--version", module="app.helper.main")
    assert helper.returncode == 0 and helper.stdout == f"braid-helper {expected}\n"


def test_help_says_where_the_log_is(state_home: Path) -> None:
    done = run("--help", env={**os.environ, "COLUMNS": "400"})  # no wrapping at hyphens
    assert done.returncode == 0
    assert str(state_home / "braid" / "braid.log") in done.stdout
