"""Traffic classes by app in the helper, for real: cgroup v2 groups, nft's socket
cgroupv2 rules, the selectors and the volume rule, process events, the bypass class
under the kill switch. Packets are counted where they go: each tunnel's interface
counters in the lab's client namespace.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.helper_client import HelperRefused, SyncHelperClient
from app.helper.cgroups import host_cgroup2
from app.lab.topology import LabInfo
from tests import classes
from tests.classes import send
from tests.faults import ns_run
from tests.helper.conftest import Helper, all_handshaken, lab_state
from tests.util import unique_name, wait_until

CGROUP2 = Path(host_cgroup2().point if host_cgroup2() else "/sys/fs/cgroup")  # type: ignore[union-attr]
MARK = {"hk": 0x01000000, "tyo": 0x02000000, "sgp": 0x03000000}


def root_of(helper: Helper) -> Path:
    return CGROUP2 / f"braid-netns-{helper.ns}" / "braid"


def classes_state(lab: LabInfo, placing: dict[str, str], *, masquerade: bool = True,
                  bulk_after: int | None = None, guard: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Every gateway up, each with its mark's rules, and ``placing`` (class -> path)."""
    doc = lab_state(lab, marking=False, guard=guard)
    for rule in doc["rules"]:
        rule["ipproto"] = 1  # probes only, as the engine's: not every flow of that source
    for g in lab.gateways:
        mark = MARK[g.name]
        doc["rules"] += [
            {"priority": 5250 + 2 * g.index, "src": None, "fwmark": mark,
             "fwmask": 0x0F000000, "action": "lookup", "table": 52001 + g.index},
            {"priority": 5251 + 2 * g.index, "src": None, "fwmark": mark,
             "fwmask": 0x0F000000, "action": "unreachable", "table": None},
        ]  # fmt: skip
    doc["marking"] = {
        "bypass_mark": 0x0F000000,
        "classes": [{"name": c, "mark": MARK[p]} for c, p in sorted(placing.items())],
        "masquerade": masquerade, "flush_marks": [], "bulk_after_bytes": bulk_after,
    }  # fmt: skip
    return doc


def tunnels(lab: LabInfo) -> dict[str, str]:
    return {g.name: g.client_interface for g in lab.gateways}


def txs(helper: Helper) -> dict[str, int]:
    return classes.txs(helper.ns, tunnels(helper.lab))


def up(helper: Helper, doc: dict[str, Any]) -> SyncHelperClient:
    client = helper.client()
    client.apply(doc)
    names = [g.client_interface for g in helper.lab.gateways]
    wait_until(lambda: all_handshaken(client.status(), names), 20, message="no handshakes")
    return client


def sender(helper: Helper, port: int = 9001, count: int = classes.BURST
           ) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    return classes.sender(helper.ns, helper.lab.server_address, port, count)


def carried_by(helper: Helper, child: subprocess.Popen[str], word: str = "go") -> str:
    return classes.carried_by(helper.ns, tunnels(helper.lab), child, word)


def move(client: SyncHelperClient, pids: list[int], cls: str | None) -> dict[str, Any]:
    return client.request("move", pids=pids, **{"class": cls})


def test_groups_live_with_the_marking_and_leave_nothing_behind(helper: Helper) -> None:
    client = helper.client()
    root = root_of(helper)
    with pytest.raises(HelperRefused) as info:
        move(client, [os.getpid()], "bulk")
    assert info.value.code == "no_classes" and "braid up" in info.value.fix
    client.apply(lab_state(helper.lab))
    status = client.status()
    assert status.classes is not None and status.classes.groups, status.classes
    assert status.classes.root == f"braid-netns-{helper.ns}/braid"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "bulk", "bypass", "default", "realtime"]
    listing = ns_run(helper.ns, "nft", "list", "table", "inet", "braid")
    assert listing.count("socket cgroupv2 level 3") == 4, listing
    with sender(helper) as child:
        assert move(client, [child.pid], "bulk")["moved"] == [child.pid]
        assert f"braid-netns-{helper.ns}/braid/bulk" in send(child)
        client.down()  # the state goes: the groups go, the process goes back where it was
        assert not root.parent.exists()
        assert "braid" not in send(child)
    assert client.status().classes.groups is False  # type: ignore[union-attr]
    # SIGTERM and --cleanup remove them too.
    client.apply(lab_state(helper.lab))
    assert root.exists()
    assert helper.sigterm() == 0
    assert not root.parent.exists()
    helper.start()
    client = helper.client()
    client.apply(lab_state(helper.lab))
    with sender(helper) as child:
        move(client, [child.pid], "realtime")
        helper.kill9()  # a crash: the groups stay, with the process in one
        assert root.exists() and "braid/realtime" in send(child)
        helper.start()  # the leftover scan knows them: the process comes out, they go
        assert not root.parent.exists() and "braid" not in send(child)
        recovered = helper.client().status().recovered
        assert any("removed cgroup" in r for r in recovered), recovered
    helper.client().apply(lab_state(helper.lab))
    helper.kill9()
    assert root.exists()
    done = helper.cleanup()
    assert "removed cgroup" in done.stdout and not root.parent.exists(), done.stdout


def test_a_moved_process_opens_its_sockets_in_its_class(helper: Helper) -> None:
    """Classes on three different paths: a process's new sockets follow its group; a
    socket opened before the move keeps the class it was opened in."""
    client = up(helper, classes_state(helper.lab, {"realtime": "hk", "bulk": "sgp",
                                                   "default": "tyo"}))
    with sender(helper) as child:
        assert carried_by(helper, child) == "tyo"  # in no group: default
        for cls, path in (("realtime", "hk"), ("bulk", "sgp"), ("default", "tyo")):
            assert move(client, [child.pid], cls)["moved"] == [child.pid]
            assert carried_by(helper, child) == path, cls
        assert move(client, [child.pid], None)["moved"] == [child.pid]  # back out
        assert carried_by(helper, child) == "tyo"
    flows = client.status().classes.flows  # type: ignore[union-attr]
    assert flows["app_realtime"] >= 1 and flows["app_bulk"] >= 1 and flows["default"] >= 1


_USER_CLIENT = r"""
import json, os, socket, sys
os.setgroups([int(sys.argv[2])])
os.setgid(int(sys.argv[3]))
os.setuid(int(sys.argv[4]))
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"v": 1, "verb": "move", "pids": [int(p) for p in sys.argv[5:]],
                      "class": "bulk"}).encode() + b"\n")
print(s.makefile().readline().strip())
"""


@pytest.fixture
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    name = unique_name("h7u", 5)
    subprocess.run(["useradd", "-M", "-N", "-G", "braid", "-s", "/usr/sbin/nologin", name],
                   check=True)  # fmt: skip
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def test_a_user_moves_only_their_own_processes(
        helper: Helper, throwaway_user: pwd.struct_passwd) -> None:
    helper.client().apply(lab_state(helper.lab))
    user = throwaway_user
    theirs = subprocess.Popen(["ip", "netns", "exec", helper.ns, "setpriv", "--reuid",
                               str(user.pw_uid), "--regid", str(user.pw_gid), "--clear-groups",
                               "sleep", "60"])
    roots = subprocess.Popen(["ip", "netns", "exec", helper.ns, "sleep", "60"])
    try:
        wait_until(lambda: _uid(theirs.pid) == user.pw_uid, 5)

        def ask(*pids: int) -> dict[str, Any]:
            done = subprocess.run(
                [sys.executable, "-c", _USER_CLIENT, str(helper.socket),
                 str(grp.getgrnam("braid").gr_gid), str(user.pw_gid), str(user.pw_uid),
                 *map(str, pids)], capture_output=True, text=True, check=True, timeout=30)
            reply: dict[str, Any] = json.loads(done.stdout)
            return reply

        refused = ask(theirs.pid, roots.pid)  # one not theirs: nothing moves
        assert not refused["ok"] and refused["error"]["code"] == "not_yours", refused
        what = refused["error"]["what"]
        assert f"process {roots.pid} is not yours" in what and "sleep" not in what
        assert "root" in what and "/" not in what  # no command line, no path
        assert "braid" not in Path(f"/proc/{theirs.pid}/cgroup").read_text()
        mine = ask(theirs.pid)
        assert mine["ok"] and mine["result"]["moved"] == [theirs.pid], mine
        assert "braid/bulk" in Path(f"/proc/{theirs.pid}/cgroup").read_text()
        gone = ask(4194303)
        assert gone["error"]["code"] == "no_process", gone
        # Root moves anyone's.
        assert move(helper.client(), [roots.pid], "realtime")["moved"] == [roots.pid]
    finally:
        for p in (theirs, roots):
            p.kill()
            p.wait()


def _uid(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def test_a_process_of_another_namespace_is_not_moved(helper: Helper) -> None:
    helper.client().apply(lab_state(helper.lab))
    with pytest.raises(HelperRefused) as info:
        move(helper.client(), [os.getpid()], "bulk")  # the test runs in the host's
    assert info.value.code == "bad_request" and "another network namespace" in info.value.what


def test_a_saved_rule_catches_a_program_as_it_starts(helper: Helper, tmp_path: Path) -> None:
    program = tmp_path / "h7-app"  # a copy: no other program on the machine is this one
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    client = helper.client()
    client.apply(lab_state(helper.lab))
    result = client.request("rules", rules=[{"exe": str(program), "class": "realtime"}])
    assert result == {"rules": 1, "moved": 0, "active": True}
    assert client.status().classes.watching  # type: ignore[union-attr]
    started = subprocess.Popen(["ip", "netns", "exec", helper.ns, str(program), "60"])
    try:
        wait_until(lambda: "braid/realtime" in Path(f"/proc/{started.pid}/cgroup").read_text(),
                   5, message="the rule did not catch the program")
        # A program elsewhere (the host's namespace) is not this helper's to move.
        outside = subprocess.Popen([str(program), "60"])
        # A negative, witnessed: the watcher takes process events in order, so once a
        # start after it in the namespace is moved, this one has been looked at.
        witness = subprocess.Popen(["ip", "netns", "exec", helper.ns, str(program), "60"])
        try:
            wait_until(lambda: "braid/realtime" in Path(
                f"/proc/{witness.pid}/cgroup").read_text(), 5,
                message="the rule did not catch the later program")
        finally:
            witness.kill()
            witness.wait()
        assert "braid" not in Path(f"/proc/{outside.pid}/cgroup").read_text()
        outside.kill()
        outside.wait()
        # Rules sent while it runs move it at once; an empty list removes them.
        assert client.request("rules", rules=[])["rules"] == 0
        assert not client.status().classes.watching  # type: ignore[union-attr]
        move(client, [started.pid], None)
        again = client.request("rules", rules=[{"exe": str(program), "class": "bulk"}])
        assert again["moved"] == 1
        assert "braid/bulk" in Path(f"/proc/{started.pid}/cgroup").read_text()
    finally:
        started.kill()
        started.wait()


def test_conferencing_ports_and_dscp_are_realtime(helper: Helper) -> None:
    up(helper, classes_state(helper.lab, {"realtime": "hk", "default": "tyo"}))
    for port, word, path in ((9001, "go", "tyo"), (3478, "go", "hk"), (8801, "go", "hk"),
                             (19302, "go", "hk"), (9001, "ef", "hk")):
        with sender(helper, port) as child:
            assert carried_by(helper, child, word) == path, (port, word)


def test_a_pinned_flow_is_never_taken_by_the_selectors(helper: Helper) -> None:
    client = up(helper, classes_state(helper.lab, {"realtime": "hk", "default": "tyo"}))
    with sender(helper, 3478) as child:
        move(client, [child.pid], "default")
        assert carried_by(helper, child) == "tyo"


_TRANSFER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9003), timeout=20)
total, chunk = int(sys.argv[2]), b"x" * 65536
sent = 0
while sent < total:
    s.sendall(chunk)
    sent += len(chunk)
    time.sleep(0.002)
s.shutdown(socket.SHUT_WR)
s.settimeout(20)
while s.recv(65536):
    pass
print(sent, flush=True)
"""


def transfer(helper: Helper, size: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", helper.ns, sys.executable, "-c", _TRANSFER,
                           helper.lab.server_address, str(size)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_a_big_transfer_becomes_bulk_and_carries_on(helper: Helper) -> None:
    """Separate exits (masquerade): past the threshold the flow is bulk by its label,
    and keeps its path (moving it would break it): it finishes."""
    client = up(helper, classes_state(helper.lab, {"bulk": "sgp", "default": "tyo"},
                                      bulk_after=200_000))
    before = txs(helper)
    done = transfer(helper, 3_000_000)
    assert done.returncode == 0, done.stderr
    grew = {k: v - before[k] for k, v in txs(helper).items()}
    assert grew["tyo"] > 1000 and grew["sgp"] < 50, grew  # it kept its path
    flows = client.status().classes.flows  # type: ignore[union-attr]
    assert flows["volume"] == 1, flows  # counted once, as bulk
    assert ns_run(helper.ns, "cat", "/proc/sys/net/netfilter/nf_conntrack_acct").strip() == "1"
    client.down()
    assert ns_run(helper.ns, "cat", "/proc/sys/net/netfilter/nf_conntrack_acct").strip() == "0"


def test_the_volume_rule_never_takes_a_pinned_or_selected_flow(helper: Helper) -> None:
    client = up(helper, classes_state(helper.lab, {"realtime": "hk", "bulk": "sgp",
                                                   "default": "tyo"}, bulk_after=1000))
    with sender(helper, 3478, count=400) as child:  # 400 x 44 bytes: past 1000
        assert carried_by(helper, child) == "hk"
        assert carried_by(helper, child) == "hk"
        move(client, [child.pid], "default")
        assert carried_by(helper, child) == "tyo"
    assert client.status().classes.flows["volume"] == 0  # type: ignore[union-attr]


def test_on_a_shared_exit_a_big_flow_moves_to_bulks_path(helper: Helper) -> None:
    """Without masquerade (a shared exit: a flow may change path) a default flow past
    the threshold takes bulk's path, from the packet that crossed it."""
    up(helper, classes_state(helper.lab, {"bulk": "sgp", "default": "tyo"}, masquerade=False,
                             bulk_after=4400))
    with sender(helper, count=400) as child:  # one socket, 400 x 44 bytes: 17.6 kB
        before = txs(helper)
        send(child)
        wait_until(lambda: sum(txs(helper)[k] - before[k] for k in before) >= 400, 10)
        grew = {k: v - before[k] for k, v in txs(helper).items()}
        # ~100 packets to pass 4400 bytes on default's path, the rest on bulk's.
        assert 80 <= grew["tyo"] <= 120 and grew["sgp"] >= 280, grew


BYPASS_PORT = 9555
_COUNT_BYPASS = (
    "table inet braidtest_bypass {\n counter seen {}\n counter from_uplink {}\n"
    " chain in { type filter hook prerouting priority -310;\n"
    f'  iifname "cl0" udp dport {BYPASS_PORT} counter name "seen"\n'
    f'  iifname "cl0" ip saddr 198.18.0.2 udp dport {BYPASS_PORT} counter name "from_uplink"\n'
    " }\n}\n")


def _count(ns: str, name: str) -> int:
    text = ns_run(ns, "nft", "list", "counter", "inet", "braidtest_bypass", name)
    return int(text.split("packets")[1].split()[0])


def test_bypass_leaves_by_the_uplink_under_the_kill_switch_and_nothing_else_does(
        helper: Helper, tmp_path: Path) -> None:
    from app.lab import topology
    from tests.faults import blaster, leaked, reset_leaks, uplink

    lab = helper.lab
    wan = topology.netns(lab.name, "wan")
    guard = {"allow": ["192.0.2.0/24"], "via": lab.gateways[0].client_interface}
    with uplink(lab), blaster(lab, tmp_path):
        client = up(helper, classes_state(lab, {"realtime": "hk", "default": "tyo"},
                                          guard=guard))
        subprocess.run(["ip", "netns", "exec", wan, "nft", "-f", "-"], input=_COUNT_BYPASS,
                       text=True, check=True)  # fmt: skip
        try:
            reset_leaks(lab)
            with sender(helper, BYPASS_PORT) as child:
                assert carried_by(helper, child) == "tyo"  # default: through its tunnel
                assert leaked(lab) == {"leak4": 0, "leak6": 0}
                move(client, [child.pid], "bypass")
                send(child)
            seen = wait_until(lambda: _count(wan, "seen") >= 300 and _count(wan, "seen"), 10,
                              message="the bypass burst never reached the uplink")
            # Out by the uplink, with the uplink's address (masqueraded from the via
            # tunnel's, which the first route lookup picked), and that is all that left.
            assert _count(wan, "from_uplink") == seen
            assert leaked(lab) == {"leak4": seen, "leak6": 0}, leaked(lab)
            assert client.status().guard.active  # type: ignore[union-attr]
        finally:
            ns_run(wan, "nft", "delete", "table", "inet", "braidtest_bypass", check=False)
