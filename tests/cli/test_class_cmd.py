"""`braid run/pin/unpin/rules/apps` as a user types them: each mistake its own message
that says what to do; rules saved and listed; the helper's refusals in the user's words.
(Traffic crossing each class's tunnel: tests/engine/test_classes.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core import classes
from app.core.errors import BraidError
from app.core.helper_client import HelperRefused
from app.lab.topology import LabInfo
from app.wire.errors import Code, ErrorReply

REPO = Path(__file__).resolve().parents[2]


def braid(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False)


def test_each_mistake_has_its_own_message(config_dir: Path) -> None:
    cases = [
        (("run", "--class", "fast", "--", "true"), "'fast' is not a traffic class",
         "use one of: realtime, bulk, default, bypass"),
        (("run", "--class", "bulk", "--", "no-such-program-h7"),
         "no program 'no-such-program-h7' found", "a command on PATH"),
        (("run", "--class", "bulk"), "no program to run", "braid run --class bulk --"),
        (("run", "--class", "realtime", "--mptcp", "--", "true"),
         "--mptcp is for the bulk class", "--class bulk"),
        (("pin", "no-such-program-h7", "--class", "bulk"), "no program 'no-such-program-h7'",
         "full path"),
        (("pin", "/usr/bin/true", "--class", "turbo"), "'turbo' is not a traffic class", ""),
        (("unpin", "/usr/bin/true"), "has no saved rule", "braid rules"),
    ]
    for argv, what, fix in cases:
        done = braid(*argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert what in done.stderr and fix in done.stderr, (argv, done.stderr)
    assert not (config_dir / "rules.toml").exists()  # nothing was saved


def test_rules_are_saved_listed_and_removed(config_dir: Path, tmp_path: Path) -> None:
    program = tmp_path / "h7-tool"
    shutil.copy("/usr/bin/true", program)
    assert "no saved rules" in braid("rules").stdout
    pinned = braid("pin", str(program), "--class", "bulk", "--mptcp")
    # No helper answers here (the system one is not running): the rule waits for it.
    assert pinned.returncode == 0, pinned.stderr
    assert f"pinned {program} as bulk" in pinned.stdout
    # A socket becomes MPTCP only when it is made: pin says how to start it so.
    assert f"braid run --class bulk --mptcp -- {program}" in pinned.stdout
    assert "the rule applies when" in pinned.stdout
    assert json.loads(braid("rules", "--json").stdout) == [
        {"exe": str(program), "class": "bulk", "mptcp": True}]
    again = braid("pin", str(program), "--class", "realtime")
    assert "(was bulk)" in again.stdout
    assert f"{program}  realtime" in braid("rules").stdout
    gone = braid("unpin", str(program))
    assert gone.returncode == 0 and "unpinned" in gone.stdout and "was realtime" in gone.stdout
    assert json.loads(braid("rules", "--json").stdout) == []


def test_the_helpers_refusals_read_as_the_users_own() -> None:
    def refused(code: Code, what: str) -> HelperRefused:
        return HelperRefused("move", ErrorReply(code, what, "helper's fix"))

    mine = classes.helper_error(refused(Code.NOT_YOURS, "process 7 is not yours: only root "
                                        "may move another user's processes"))
    assert mine.what.startswith("process 7 is not yours") and "your own" in mine.fix
    assert "braid apps" in classes.helper_error(refused(Code.NO_PROCESS, "no process 7")).fix
    down = classes.helper_error(refused(Code.NO_CLASSES, "no Braid connection is up here"))
    assert down.what == "no Braid connection is up here" and down.fix == "helper's fix"
    other = BraidError("x", "y")
    assert classes.helper_error(other) is other


def test_run_without_a_connection_says_to_connect_first(
        make_lab: Callable[..., LabInfo], config_dir: Path) -> None:
    lab = make_lab("clean")
    done = braid("run", "--lab", lab.name, "--class", "bulk", "--", "true")
    assert done.returncode == 2
    assert "no Braid connection is up here" in done.stderr and "braid up" in done.stderr


def test_apps_lists_a_program_with_a_socket(
        make_lab: Callable[..., LabInfo], config_dir: Path) -> None:
    lab = make_lab("clean")
    code = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('0.0.0.0', 0)); print('ready', flush=True); sys.stdin.read()")
    child = subprocess.Popen(["ip", "netns", "exec", f"braid-{lab.name}-client",
                              sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        listed = json.loads(braid("apps", "--json", "--lab", lab.name).stdout)
        mine = [a for a in listed if child.pid in a["pids"]]
        assert mine and mine[0]["exe"] == os.path.realpath(sys.executable), listed
        assert mine[0]["cls"] is None and mine[0]["sockets"] >= 1
        table = braid("apps", "--lab", lab.name).stdout
        assert "CLASS" in table and str(child.pid) in table
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("argv", [("run", "--help"), ("pin", "--help"), ("apps", "--help")])
def test_help_says_what_a_socket_keeps(argv: tuple[str, ...]) -> None:
    done = braid(*argv)
    assert done.returncode == 0 and "CLASS" in done.stdout.upper()
