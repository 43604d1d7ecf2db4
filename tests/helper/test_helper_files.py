"""The helper's files: its state directory is its own, journal pids are checked before
anything is killed, wireguard-go's logs stay bounded."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

from app.helper.statedir import LOG_KEEP, LOG_LIMIT
from app.lab.topology import LabInfo
from tests.helper.conftest import Helper, lab_state
from tests.util import wait_until


def _start_fails(h: Helper) -> str:
    done = subprocess.run(h.argv(), capture_output=True, text=True, timeout=60, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2, done.stderr
    return done.stderr


def test_a_state_dir_that_is_a_symlink_or_not_roots_is_refused(
    lab: LabInfo, tmp_path: Path, sock_dir: Path,
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "state"
    link.symlink_to(target)
    h = Helper(lab, sock_dir / "f.sock", link, tmp_path / "f.log")
    assert "is a symlink" in _start_fails(h)
    assert list(target.iterdir()) == []
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, pwd.getpwnam("nobody").pw_uid, -1)
    h = Helper(lab, sock_dir / "f.sock", foreign, tmp_path / "f.log")
    err = _start_fails(h)
    assert "belongs to uid" in err and "what to do" in err
    assert not (sock_dir / "f.sock").exists()


def test_a_loose_state_dir_is_tightened(lab: LabInfo, tmp_path: Path, sock_dir: Path) -> None:
    loose = tmp_path / "state"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    h = Helper(lab, sock_dir / "f.sock", loose, tmp_path / "f.log")
    h.start()
    try:
        assert loose.stat().st_mode & 0o777 == 0o700
    finally:
        h.stop()
        h.cleanup()


def test_a_journal_pid_is_not_killed_unless_it_is_that_wireguard_go(helper: Helper) -> None:
    """A pid in the journal may be anyone's by now (reused, or the journal was edited):
    only a wireguard-go of this namespace serving that interface is stopped."""
    innocent = subprocess.Popen(["ip", "netns", "exec", helper.ns, "sleep", "600"])
    try:
        wait_until(lambda: (Path(f"/proc/{innocent.pid}/cmdline").read_bytes()
                            .startswith(b"sleep")), 10)
        fields = Path(f"/proc/{innocent.pid}/stat").read_text().rsplit(")", 1)[1].split()
        start = int(fields[19])
        helper.kill9()
        iface = helper.lab.gateways[0].client_interface
        (helper.state_dir / "journal.json").write_text(json.dumps({
            "version": 1, "links": [iface],
            "wireguard_go": [{"iface": iface, "pid": innocent.pid, "start": start}]}))
        helper.start()
        assert innocent.poll() is None, "the helper killed a process that was not its own"
    finally:
        innocent.kill()
        innocent.wait()


def test_wireguard_go_logs_stay_bounded(lab: LabInfo, tmp_path: Path, sock_dir: Path) -> None:
    state_dir = tmp_path / "state"
    h = Helper(lab, sock_dir / "f.sock", state_dir, tmp_path / "f.log",
               extra=("--verify-seconds", "0.2"))
    h.start()
    try:
        iface = lab.gateways[0].client_interface
        log = state_dir / f"wireguard-go-{iface}.log"
        log.write_bytes(b"x" * (3 * LOG_LIMIT))  # what an earlier run left
        h.client().apply(lab_state(lab, ("hk",), marking=False))
        assert log.stat().st_size <= LOG_LIMIT  # rotated when it started
        assert (state_dir / f"{log.name}.1").stat().st_size <= LOG_KEEP
        with log.open("ab") as f:  # a running child that logs a lot
            f.write(b"y" * (2 * LOG_LIMIT))
        wait_until(lambda: log.stat().st_size <= LOG_LIMIT, 10,
                   message="a growing wireguard-go log was not bounded")
        assert (state_dir / f"{log.name}.1").read_bytes().endswith(b"y" * 100)
    finally:
        h.stop()
        h.cleanup()
