"""braid-helper's command line: refusals before it touches anything."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.helper.main import _where_everything_is, main
from app.wire.version import package_version
from tests.helper.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.helper.main", *args],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def run_as_nobody(*args: str) -> tuple[int, str]:
    """main() in a forked child that dropped to nobody (who cannot exec root's Python)."""
    pw = pwd.getpwnam("nobody")
    # What main() imports lazily (--version's metadata reader), imported here: nobody
    # cannot read root's Python library, and the child only inherits what is loaded.
    package_version()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        sys.stderr = os.fdopen(write, "w")  # pytest has replaced sys.stderr
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        rc = main(list(args))
        sys.stderr.flush()
        os._exit(rc)
    os.close(write)
    with os.fdopen(read) as err:
        text = err.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def test_help_names_the_confinement() -> None:
    done = run("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for word in ("br-*", "52000-52099", "5200-5299", "inet braid", "--cleanup", "--backend"):
        assert word in text


def test_refuses_to_run_unprivileged() -> None:
    rc, err = run_as_nobody("--socket", "/nonexistent/x.sock")
    assert rc == 2
    assert "must run as root" in err and "what to do" in err


def test_kernel_backend_without_the_module_says_what_to_do(tmp_path: Path) -> None:
    if Path("/sys/module/wireguard").exists():  # pragma: no cover - not on this machine
        return
    done = run("--backend", "kernel", "--socket", str(tmp_path / "s"), "--state-dir",
               str(tmp_path / "state"))  # fmt: skip
    assert done.returncode == 2
    assert "no WireGuard module" in done.stderr and "--backend userspace" in done.stderr
    assert not (tmp_path / "s").exists()


def test_a_slow_stop_says_where_each_task_is(caplog: pytest.LogCaptureFixture) -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    async def go() -> None:
        task = asyncio.create_task(stuck(), name="the-stuck-one")
        await asyncio.sleep(0)
        _where_everything_is()
        task.cancel()

    with caplog.at_level(logging.ERROR, logger="braid.helper"):
        asyncio.run(go())
    assert "stopping is taking more than" in caplog.text
    assert re.search(r"the-stuck-one: stuck \(.*test_helper_main.py:\d+\)", caplog.text)
