"""Traffic classes by app with the engine on a real lab: `braid run --class`, `braid pin`,
a saved rule the engine sends at connect (and again after a helper restart), each
program's packets counted on the tunnel they cross.

On a clean lab the engine puts realtime and default on the best path (hk) and keeps bulk
off it: bulk and default are on two different paths, which is what the counts tell
apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.apprules import RuleStore
from app.core.helper_client import SyncHelperClient
from app.lab.topology import LabInfo, netns
from tests import classes
from tests.engine.conftest import Connected
from tests.faults import restart_helper
from tests.util import wait_until

REPO = Path(__file__).resolve().parents[2]


def tunnels(lab: LabInfo) -> dict[str, str]:
    return {g.name: g.client_interface for g in lab.gateways}


def braid(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False)


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    """A program of the test's own (a copy of Python): a rule for it matches nothing
    else on the machine."""
    program = tmp_path / "h7-app"
    shutil.copy(os.path.realpath(sys.executable), program)
    return program


@pytest.fixture
def rules(config_dir: Path) -> RuleStore:
    """The test's own rules file (BRAID_CONFIG_DIR, where the engine and `braid` look)."""
    return RuleStore(config_dir)


def placed(c: Connected) -> tuple[str, tuple[str, ...]]:
    """default's path and bulk's, once the engine has spread bulk over the two others
    (docs/multipath.md, "Bulk spreading": a new bulk flow takes either)."""
    wait_until(lambda: c.rec.carrier() is not None and c.rec.last is not None and len(
        bulk := c.rec.last.classes.get("bulk", ())) == 2 and c.rec.carrier() not in bulk,
        timeout=20, message=f"bulk never spread off default's path: {c.rec.last}")
    default, snap = c.rec.carrier(), c.rec.last
    assert default is not None and snap is not None
    return default, snap.classes["bulk"]


def test_braid_run_puts_a_program_on_its_classs_path(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    lab = make_lab("clean")
    c = connect(lab)
    default, bulk = placed(c)
    ns = netns(lab.name, "client")
    run = [sys.executable, "-m", "app.cli.main", "run", "--lab", lab.name]
    with classes.sender(ns, lab.server_address, prefix=[*run, "--class", "bulk", "--"]) as child:
        assert classes.carried_by(ns, tunnels(lab), child) in bulk
    with classes.sender(ns, lab.server_address) as child:  # no class: default
        assert classes.carried_by(ns, tunnels(lab), child) == default
    with classes.sender(ns, lab.server_address,
                        prefix=[*run, "--class", "realtime", "--"]) as child:
        assert classes.carried_by(ns, tunnels(lab), child) == c.rec.carrier("realtime")
    # --mptcp is bulk's only (what it does: tests/engine/test_engine_mptcp.py).
    refused = braid("run", "--lab", lab.name, "--class", "realtime", "--mptcp", "--", "true")
    assert refused.returncode == 2 and "--mptcp is for the bulk class" in refused.stderr
    ok = braid("run", "--lab", lab.name, "--class", "bulk", "--mptcp", "--", "true")
    assert ok.returncode == 0, ok.stderr


def test_pinning_a_running_program_moves_its_new_sockets(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected], app_copy: Path,
        rules: RuleStore) -> None:
    lab = make_lab("clean")
    c = connect(lab)
    default, bulk = placed(c)
    ns = netns(lab.name, "client")
    with classes.sender(ns, lab.server_address, program=str(app_copy)) as child:
        assert classes.carried_by(ns, tunnels(lab), child) == default
        pinned = braid("pin", str(app_copy), "--class", "bulk", "--lab", lab.name)
        assert pinned.returncode == 0, pinned.stderr
        assert f"pinned {app_copy} as bulk" in pinned.stdout
        assert f"moved 1 running process (pid {child.pid}) into bulk" in pinned.stdout
        assert "a socket keeps the class it was opened in" in pinned.stdout
        assert f"to restart it in its class: kill {child.pid} && " in pinned.stdout
        assert classes.carried_by(ns, tunnels(lab), child) in bulk
        assert [(r.exe, r.cls) for r in rules.load()] == [(str(app_copy), "bulk")]
        unpinned = braid("unpin", str(app_copy), "--lab", lab.name)
        assert unpinned.returncode == 0 and "unpinned" in unpinned.stdout, unpinned.stderr
        assert classes.carried_by(ns, tunnels(lab), child) == default
        assert rules.load() == []


def test_a_saved_rule_is_sent_at_connect_and_after_a_helper_restart(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected], app_copy: Path,
        rules: RuleStore) -> None:
    rules.pin(str(app_copy), "bulk")
    lab = make_lab("clean")
    c = connect(lab)
    _, bulk = placed(c)
    ns = netns(lab.name, "client")

    def held() -> int:
        """The rules the helper holds, once it watches processes start: rules sent
        before the state (a restart's race) wait for the groups to exist."""
        with SyncHelperClient(lab.helper_socket) as client:
            status = client.status()
        return status.classes.rules if status.classes and status.classes.watching else 0

    wait_until(lambda: held() == 1, timeout=10, message="the engine never sent the rule")
    def moved(child: subprocess.Popen[str]) -> bool:
        """The helper moves a program on its exec event, asynchronously: by the time
        the program has started, as a rule, but a restarted helper can be later."""
        return "braid/bulk" in Path(f"/proc/{child.pid}/cgroup").read_text()

    with classes.sender(ns, lab.server_address, program=str(app_copy)) as child:
        # Started after the rule: the helper moved it as it started (process events).
        wait_until(lambda: moved(child), timeout=5, message="not moved as it started")
        assert classes.carried_by(ns, tunnels(lab), child) in bulk
    restart_helper(lab)  # its rules went with it; the engine sends them again
    wait_until(lambda: held() == 1, timeout=20, message="the rule was not sent again")
    with classes.sender(ns, lab.server_address, program=str(app_copy)) as child:
        wait_until(lambda: moved(child), timeout=5, message="not moved after the restart")
