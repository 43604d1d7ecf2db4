"""The socket's rules: who may talk, framing, versions, verbs, field errors.

Every refusal is checked to be clear (names what was wrong) and to change nothing in
the kernel.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import BraidError
from app.core.helper_client import SyncHelperClient
from app.lab.topology import LabInfo
from app.wire.protocol import MAX_MESSAGE_BYTES
from tests.helper.conftest import Helper, all_handshaken, kernel_dump, lab_state, raw_request
from tests.util import wait_until


def request(helper: Helper, msg: dict[str, Any]) -> dict[str, Any]:
    reply = raw_request(helper.socket, json.dumps(msg).encode() + b"\n")
    assert reply is not None
    return reply


def test_hello_negotiates_a_version(helper: Helper) -> None:
    hello = helper.client().hello()
    assert hello["version"] == 1 and set(hello["verbs"]) == {
        "hello", "apply", "status", "down", "move", "rules"}
    assert hello["idle_seconds"] == 60
    reply = request(helper, {"v": 1, "id": 3, "verb": "hello", "versions": [7, 8]})
    assert reply["id"] == 3 and not reply["ok"] and reply["error"]["code"] == "bad_version"


@pytest.fixture
def applied(helper: Helper) -> Helper:
    """One tunnel up, so that 'nothing changed' means something."""
    client = helper.client()
    client.apply(lab_state(helper.lab, ("hk",)))
    wait_until(
        lambda: all_handshaken(client.status(), [helper.lab.gateways[0].client_interface]), 15
    )
    return helper


def _bad_states(helper: Helper) -> list[tuple[str, dict[str, Any], str]]:
    def mutated(path: list[Any], value: Any) -> dict[str, Any]:
        doc = lab_state(helper.lab, ("hk", "tyo"))
        node: Any = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        return doc

    return [
        ("name outside br-*", mutated(["tunnels", 1, "name"], "eth0"), "tunnels[1].name"),
        ("table outside range", mutated(["tables", 0, "id"], 254), "tables[0].id"),
        ("rule table outside", mutated(["rules", 0, "table"], 100), "rules[0].table"),
        ("priority outside", mutated(["rules", 1, "priority"], 100), "rules[1].priority"),
        ("mark outside mask", mutated(["rules", 2, "fwmark"], 0x10), "rules[2].fwmark"),
        ("class mark", mutated(["marking", "classes", 0, "mark"], 0x1), "marking.classes[0].mark"),
        ("bad key", mutated(["tunnels", 0, "private_key"], "abc"), "tunnels[0].private_key"),
        (
            "short key",
            mutated(["tunnels", 1, "peers", 0, "public_key"], base64.b64encode(b"x" * 31).decode()),
            "tunnels[1].peers[0].public_key",
        ),
        ("bad address", mutated(["tunnels", 1, "addresses"], ["198.19.1.300/32"]),
         "tunnels[1].addresses[0]"),
        ("hostname endpoint", mutated(["tunnels", 1, "peers", 0, "endpoint"], "gw.example:1"),
         "tunnels[1].peers[0].endpoint"),
        ("bad allowed ip", mutated(["tunnels", 1, "peers", 0, "allowed_ips"], ["x/33"]),
         "tunnels[1].peers[0].allowed_ips[0]"),
    ]  # fmt: skip


def test_bad_requests_get_clear_errors_and_change_nothing(applied: Helper) -> None:
    helper = applied
    before = kernel_dump(helper.ns)
    cases: list[tuple[bytes, str]] = [
        (b"{not json\n", "bad_json"),
        (b"\xff\xfe\n", "bad_json"),
        (b"[1, 2]\n", "bad_json"),
        (b'{"v": 1, "verb": "shell", "cmd": "rm -rf /"}\n', "unknown_verb"),
        (b'{"v": 9, "verb": "status"}\n', "bad_version"),
        (b'{"verb": "status"}\n', "bad_version"),
        (b'{"v": 1, "verb": "status", "extra": 1}\n', "bad_request"),
        (b'{"v": 1, "verb": "apply"}\n', "bad_request"),
        (b'{"v": 1, "verb": "apply", "state": []}\n', "bad_state"),
    ]
    for payload, code in cases:
        reply = raw_request(helper.socket, payload)
        assert reply is not None and not reply["ok"], payload
        assert reply["error"]["code"] == code, (payload, reply)
        assert reply["error"]["what"], payload
    for what, state, field in _bad_states(helper):
        reply = request(helper, {"v": 1, "verb": "apply", "state": state})
        assert not reply["ok"] and reply["error"]["code"] == "bad_state", what
        assert reply["error"]["what"].startswith(field + ":"), (what, reply["error"]["what"])
    # The client turns refusals into BraidError with the helper's words.
    with pytest.raises(BraidError, match=r"tunnels\[1\]\.name"):
        helper.client().apply(_bad_states(helper)[0][1])
    assert kernel_dump(helper.ns) == before
    assert len(helper.client().status().tunnels) == 1


def test_oversized_message_is_refused_and_the_connection_closed(applied: Helper) -> None:
    before = kernel_dump(applied.ns)
    blob = b'{"v": 1, "verb": "status", "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}\n'
    reply = raw_request(applied.socket, blob)
    assert reply is not None and reply["error"]["code"] == "too_large" and reply["error"]["fatal"]
    assert kernel_dump(applied.ns) == before
    assert applied.client().status().tunnels  # the helper still serves others


def test_socket_is_root_and_group_braid_0660(helper: Helper) -> None:
    st = helper.socket.stat()
    assert st.st_uid == 0 and st.st_gid == grp.getgrnam("braid").gr_gid
    assert st.st_mode & 0o777 == 0o660


_AS_USER = r"""
import json, os, socket, sys
groups = [int(g) for g in sys.argv[2].split(",") if g]
os.setgroups(groups)
os.setgid(int(sys.argv[3]))
os.setuid(int(sys.argv[4]))
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
try:
    s.sendall(b'{"v": 1, "verb": "hello"}\n')
except BrokenPipeError:
    pass  # a refused peer may be cut off before it speaks; the reply is waiting
print(s.makefile().readline().strip())
"""


def as_nobody(sock: Path, groups: list[int]) -> str:
    nobody = pwd.getpwnam("nobody")
    done = subprocess.run(
        [sys.executable, "-c", _AS_USER, str(sock), ",".join(map(str, groups)),
         str(nobody.pw_gid), str(nobody.pw_uid)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_user_outside_group_braid_is_refused(helper: Helper) -> None:
    # The file mode stops them first...
    assert as_nobody(helper.socket, []) == "EACCES"
    # ...and SO_PEERCRED stops them even where the mode would let them in.
    os.chmod(helper.socket, 0o666)
    reply = json.loads(as_nobody(helper.socket, []))
    assert not reply["ok"] and reply["error"]["code"] == "forbidden"
    assert "group braid" in reply["error"]["what"] and "usermod" in reply["error"]["fix"]
    assert "refused connection" in helper.log.read_text()


def test_a_member_of_group_braid_is_let_in(helper: Helper) -> None:
    reply = json.loads(as_nobody(helper.socket, [grp.getgrnam("braid").gr_gid]))
    assert reply["ok"] and reply["result"]["version"] == 1


def test_client_errors_say_what_to_do(tmp_path: Path) -> None:
    with (
        SyncHelperClient(tmp_path / "nothing.sock") as client,
        pytest.raises(BraidError, match="braid-helper is not running") as info,
    ):
        client.status()
    assert "systemctl start braid-helper" in info.value.fix


_HOLD = r"""
import json, os, socket, sys, time
os.setgroups([int(sys.argv[2])])
os.setgid(int(sys.argv[3]))
os.setuid(int(sys.argv[4]))
held, busy = [], 0
for _ in range(64):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.settimeout(0.2)
    try:
        line = s.recv(4096)
    except TimeoutError:
        held.append(s)  # admitted: the helper waits for a request
        continue
    busy += b'"busy"' in line
print(json.dumps({"held": len(held), "busy": busy}), flush=True)
sys.stdin.readline()
"""


def test_a_group_member_cannot_lock_out_root(helper: Helper) -> None:
    """Silent connections count per uid: one member's 64 take 16 slots, and root (or
    anyone else) still gets in."""
    nobody = pwd.getpwnam("nobody")
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(helper.socket), str(grp.getgrnam("braid").gr_gid),
         str(nobody.pw_gid), str(nobody.pw_uid)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        counts = json.loads(child.stdout.readline())
        assert counts == {"held": 16, "busy": 48}, counts
        reply = raw_request(helper.socket, b'{"v": 1, "verb": "status"}\n')
        assert reply is not None and reply["ok"], reply
    finally:
        child.kill()
        child.wait()


def test_a_silent_connection_is_closed_but_the_owners_is_not(
    lab: LabInfo, tmp_path: Path, sock_dir: Path,
) -> None:
    h = Helper(lab, sock_dir / "i.sock", tmp_path / "state", tmp_path / "i.log",
               extra=("--idle-seconds", "0.3"))
    h.start()
    try:
        owner = h.client()
        owner.apply(lab_state(lab, ("hk",), marking=False))
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(h.socket))
            reply = json.loads(s.makefile().readline())  # sent nothing: closed
            assert reply["error"]["code"] == "idle" and reply["error"]["fatal"], reply
            assert s.recv(1) == b""
        # The owner said nothing for longer than that and is still connected.
        watcher = h.client()
        wait_until(lambda: "closed after 0.3s" in h.log.read_text(), 5)
        assert watcher.status().owner_connected
        assert owner.status().tunnels
    finally:
        h.stop()
        h.cleanup()


def test_only_the_owner_changes_the_state_while_it_is_connected(
    lab: LabInfo, tmp_path: Path, sock_dir: Path,
) -> None:
    h = Helper(lab, sock_dir / "o.sock", tmp_path / "state", tmp_path / "o.log", grace=30)
    h.start()
    try:
        owner, other = h.client(), h.client()
        state = lab_state(lab, ("hk",), marking=False)
        owner.apply(state)
        for verb in ("apply", "down"):
            with pytest.raises(BraidError, match=r"another client's state is in force "
                                                 rf"\(pid {os.getpid()}, uid 0\)") as info:
                other.apply(state) if verb == "apply" else other.down()
            assert "disconnect it first" in info.value.fix
        assert other.status().owner_connected  # status from anyone
        owner.close()
        wait_until(lambda: other.status().grace_remaining_s is not None, 5)
        other.apply(state)  # the owner left: the grace period runs, anyone takes over
        st = other.status()
        assert st.owner_connected and st.grace_remaining_s is None
    finally:
        h.stop()
        h.cleanup()
