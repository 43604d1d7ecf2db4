"""The system's DNS while connected (app/helper/dns.py), against the real thing where it
runs here: the managed resolv.conf of a lab's client namespace (`ip netns exec` mounts
/etc/netns/<ns>/resolv.conf over /etc/resolv.conf for the helper, so the host's file is
never touched), real nft, real tunnels to the far side's resolver, the lab's ISP
resolver counting what reaches it. resolvconf and systemd-resolved are not installed
(and resolved cannot run without systemd): a fake `resolvconf` on PATH and a fake
resolve1 service on a private bus (tests/helper/fake_resolved.py) stand in for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.helper_client import HelperRefused, SyncHelperClient
from app.helper.dns import MARKER, ResolvFile
from app.helper.statedir import StateDir
from app.lab import nodes
from app.lab.dnsserver import FAR_NAME, ISP_NAME, read_counts
from app.lab.model import CLIENT_WAN, SERVER_ADDRESS
from app.lab.topology import LabInfo, netns
from app.wire.state import DnsState
from tests.helper.conftest import (
    REPO,
    Helper,
    all_handshaken,
    kernel_dump,
    lab_state,
)
from tests.util import wait_until

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
DOMAIN = "braid.lab"


# ---- the lab's view --------------------------------------------------------------------
def resolv(lab: LabInfo) -> str:
    return nodes.client_resolv_conf(lab.name).read_text()


def in_client(lab: LabInfo, code: str, *args: str) -> Any:
    done = subprocess.run(["ip", "netns", "exec", netns(lab.name, "client"), sys.executable,
                           "-c", code, *args], capture_output=True, text=True, check=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(done.stdout)


_RESOLVE = (
    "import json, socket, sys\n"
    "try:\n"
    "    out = sorted({i[4][0] for i in socket.getaddrinfo(sys.argv[1], 53, socket.AF_INET)})\n"
    "except socket.gaierror:\n"
    "    out = None\n"
    "print(json.dumps(out))\n"
)
_ASK = ("import json, sys\nfrom app.lab.dnsserver import ask\n"
        "print(json.dumps(ask(sys.argv[1], sys.argv[2])))\n")


def resolve(lab: LabInfo, name: str) -> list[str] | None:
    """What the system's resolver (glibc, reading the namespace's resolv.conf) says."""
    out: list[str] | None = in_client(lab, _RESOLVE, name)
    return out


def ask(lab: LabInfo, server: str, name: str) -> Any:
    """A query sent straight to ``server`` (an app with its own resolver): None if
    nothing answered."""
    return in_client(lab, _ASK, server, name)


def queries(lab: LabInfo, zone: str) -> int:
    return int(read_counts(nodes.dns_counts(lab, zone))["queries"])


def dns_state(lab: LabInfo, guard: bool = True, **dns: Any) -> dict[str, Any]:
    via = lab.gateways[0].client_interface
    doc = lab_state(lab, guard={"allow": ["198.18.0.0/24"], "via": via} if guard else None)
    doc["dns"] = {"servers": [SERVER_ADDRESS], "domains": [DOMAIN], "via": via, **dns}
    return doc


def connected(client: SyncHelperClient, lab: LabInfo, state: dict[str, Any]) -> None:
    client.apply(state)
    names = [t["name"] for t in state["tunnels"]]
    wait_until(lambda: all_handshaken(client.status(), names), 15,
               message="tunnels never handshook")


@pytest.fixture(autouse=True)
def host_file_untouched() -> Iterator[None]:
    """Whatever a test does, the host's own resolv.conf stays exactly as it was."""
    before = (os.lstat(HOST_RESOLV_CONF), HOST_RESOLV_CONF.read_bytes())
    yield
    after = (os.lstat(HOST_RESOLV_CONF), HOST_RESOLV_CONF.read_bytes())
    assert (after[0].st_ino, after[0].st_mode, after[0].st_mtime_ns, after[1]) == (
        before[0].st_ino, before[0].st_mode, before[0].st_mtime_ns, before[1])


# ---- the managed file, for real ---------------------------------------------------------
def test_names_resolve_through_the_tunnel_and_nothing_reaches_the_isp(
        lab: LabInfo, helper: Helper) -> None:
    original = resolv(lab)
    mode = os.stat(nodes.client_resolv_conf(lab.name)).st_mode
    assert resolve(lab, ISP_NAME) == [CLIENT_WAN]  # before: the ISP's resolver answers
    assert resolve(lab, FAR_NAME) is None  # and knows nothing of the far side
    client = helper.client()
    connected(client, lab, dns_state(lab))
    assert resolv(lab) == f"{MARKER}\nnameserver {SERVER_ADDRESS}\nsearch {DOMAIN}\n"
    isp, far = queries(lab, "isp"), queries(lab, "far")

    assert resolve(lab, FAR_NAME) == [SERVER_ADDRESS]
    assert resolve(lab, "server") == [SERVER_ADDRESS]  # the search domain
    assert queries(lab, "far") > far
    # An app that asks the ISP's resolver itself (it is on the LAN, which the guard lets
    # out) gets nothing: DNS outside the tunnels is dropped, and counted.
    assert ask(lab, CLIENT_WAN, ISP_NAME) is None
    assert queries(lab, "isp") == isp
    status = client.status()
    assert status.dns is not None
    assert (status.dns.mechanism, status.dns.active, status.dns.held, status.dns.via) == (
        "file", True, None, lab.gateways[0].client_interface)
    assert status.dns.blocked_queries >= 1

    client.down()
    assert resolv(lab) == original  # byte for byte
    assert os.stat(nodes.client_resolv_conf(lab.name)).st_mode == mode
    assert client.status().dns is None
    assert resolve(lab, ISP_NAME) == [CLIENT_WAN]


def test_refused_dns_fields_change_nothing(lab: LabInfo, helper: Helper) -> None:
    client = helper.client()
    original = resolv(lab)
    via = lab.gateways[0].client_interface
    bad: list[tuple[dict[str, Any], str]] = [
        ({"servers": ["127.0.0.53"], "via": via}, "dns.servers[0]"),
        ({"servers": ["fe80::1%wan0"], "via": via}, "dns.servers[0]"),
        ({"servers": ["198.18.0.1"], "via": via}, "dns.servers[0]"),  # in guard.allow
        ({"servers": [SERVER_ADDRESS]}, "dns.via"),
        ({"servers": [SERVER_ADDRESS], "via": "br-nope"}, "dns.via"),
        ({"servers": [SERVER_ADDRESS], "via": via, "domains": ["x\nnameserver 6.6.6.6"]},
         "dns.domains[0]"),
        ({"servers": [SERVER_ADDRESS], "via": via, "domains": ["a b"]}, "dns.domains[0]"),
        ({"servers": [SERVER_ADDRESS], "via": via, "path": "/etc/passwd"}, "dns.path"),
        ({"servers": [SERVER_ADDRESS] * 2, "via": via}, "dns.servers[1]"),
        ({"servers": [f"10.0.0.{i}" for i in range(1, 10)], "via": via}, "dns.servers"),
        ({"servers": [], "via": via}, "dns"),
        ({"servers": [SERVER_ADDRESS], "via": via,
          "split": [{"via": via, "servers": ["10.20.0.53"]}]}, "dns.split[0].via"),
    ]
    guard = {"allow": ["198.18.0.0/24"], "via": via}

    def refused_all() -> None:
        for dns, path in bad:
            doc = lab_state(lab, guard=guard)
            doc["dns"] = dns
            with pytest.raises(HelperRefused) as refused:
                client.apply(doc)
            assert refused.value.code == "bad_state"
            assert refused.value.what.startswith(f"braid-helper refused apply: {path}:"), (
                dns, refused.value.what)

    before = kernel_dump(helper.ns)
    refused_all()
    assert resolv(lab) == original and kernel_dump(helper.ns) == before
    # Connected, with DNS set: a refused state leaves that too as it was.
    good = dns_state(lab)
    client.apply(good)
    ours = resolv(lab)
    refused_all()
    assert resolv(lab) == ours
    assert client.status().dns is not None
    client.down()
    assert resolv(lab) == original


def test_kill9_with_the_guard_keeps_the_tunnels_dns_until_the_user_disconnects(
        lab: LabInfo, tmp_path: Path, sock_dir: Path) -> None:
    """Safest against leaks: while the kill switch holds, lookups go nowhere (the
    tunnels' servers are unreachable), instead of to the ISP in plaintext."""
    original = resolv(lab)
    h = Helper(lab, sock_dir / "k.sock", tmp_path / "state", tmp_path / "k.log")
    h.start()
    try:
        connected(h.client(), lab, dns_state(lab))
        ours = resolv(lab)
        h.kill9()
        assert resolv(lab) == ours  # nobody restored it: the crash left it
        isp = queries(lab, "isp")
        h.clients.clear()
        h.start()
        status = h.client().status()
        assert status.guard is not None and status.guard.held == "adopted"
        assert status.dns is not None
        assert (status.dns.held, status.dns.mechanism, status.dns.servers) == (
            "adopted", "file", (SERVER_ADDRESS,))
        assert resolv(lab) == ours
        assert resolve(lab, FAR_NAME) is None and resolve(lab, ISP_NAME) is None
        assert ask(lab, CLIENT_WAN, ISP_NAME) is None  # the adopted guard drops it
        assert queries(lab, "isp") == isp
        # A client reconnecting takes it over without a rewrite; a disconnect restores.
        client = h.client()
        connected(client, lab, dns_state(lab))
        assert resolve(lab, FAR_NAME) == [SERVER_ADDRESS]
        client.down()
        assert resolv(lab) == original
    finally:
        h.stop()
        h.cleanup()
    assert resolv(lab) == original


def test_kill9_without_the_guard_restores_at_restart_and_cleanup_and_sigterm_restore(
        lab: LabInfo, tmp_path: Path, sock_dir: Path) -> None:
    original = resolv(lab)
    h = Helper(lab, sock_dir / "r.sock", tmp_path / "state", tmp_path / "r.log")
    h.start()
    try:
        connected(h.client(), lab, dns_state(lab, guard=False))
        assert resolv(lab) != original
        h.kill9()
        h.clients.clear()
        h.start()  # nothing protected: a dead tunnel's servers would only break lookups
        status = h.client().status()
        assert status.dns is None
        assert any("DNS" in r and "restored" in r for r in status.recovered), status.recovered
        assert resolv(lab) == original
        assert resolve(lab, ISP_NAME) == [CLIENT_WAN]

        h.client().apply(dns_state(lab))
        assert resolv(lab) != original
        h.kill9()
        h.clients.clear()
        done = h.cleanup()
        assert done.returncode == 0, done.stderr
        assert "restored" in done.stdout
        assert resolv(lab) == original

        h.start()
        h.client().apply(dns_state(lab))
        assert resolv(lab) != original
        assert h.sigterm() == 0
        assert resolv(lab) == original
    finally:
        h.stop()
        h.cleanup()


def test_a_rewritten_resolv_conf_is_taken_back_and_the_newest_one_restored(
        lab: LabInfo, helper: Helper) -> None:
    """A DHCP client rewriting resolv.conf while connected would send lookups to the ISP:
    the helper writes Braid's again (drift timer), and on disconnect puts back the newest
    file, the system's latest word."""
    original = resolv(lab)
    path = nodes.client_resolv_conf(lab.name)
    client = helper.client()
    client.apply(dns_state(lab))
    ours = resolv(lab)
    renewed = "# renewed by dhclient\nnameserver 198.18.0.1\nsearch isp.example\n"
    with path.open("w") as f:  # in place: the helper's mount holds this inode
        f.write(renewed)
    wait_until(lambda: resolv(lab) == ours, 10, message="the helper never took it back")
    client.down()
    assert resolv(lab) == renewed
    with path.open("w") as f:
        f.write(original)


def test_a_helper_whose_resolv_conf_is_the_hosts_refuses_to_write_it(
        lab: LabInfo, tmp_path: Path, sock_dir: Path) -> None:
    """In a namespace without /etc/netns/<ns>/resolv.conf, /etc/resolv.conf is the
    host's: a lab or test helper never writes that."""
    path = nodes.client_resolv_conf(lab.name)
    saved = path.read_text()
    path.unlink()  # the helper's `ip netns exec` then mounts nothing over the host's
    h = Helper(lab, sock_dir / "n.sock", tmp_path / "state", tmp_path / "n.log")
    try:
        h.start()
        client = h.client()
        before = kernel_dump(h.ns)
        with pytest.raises(HelperRefused) as refused:
            client.apply(dns_state(lab))
        assert refused.value.code == "failed" and "the host's" in refused.value.what
        assert kernel_dump(h.ns) == before  # rolled back: the tunnels are gone again
    finally:
        h.stop()
        h.cleanup()
        path.write_text(saved)


# ---- what the file was: a file, a symlink, nothing --------------------------------------
@pytest.mark.parametrize("kind", ["file", "symlink", "absent"])
def test_the_original_comes_back_as_it_was(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "etc" / "resolv.conf"
    path.parent.mkdir()
    target = tmp_path / "run-resolv.conf"
    target.write_text("nameserver 192.0.2.53\n")
    if kind == "file":
        path.write_text("# mine\nnameserver 192.0.2.1\noptions edns0\n")
        os.chmod(path, 0o640)
        os.chown(path, 0, 4)
    elif kind == "symlink":
        path.symlink_to(target)
    before = (os.lstat(path) if kind != "absent" else None,
              path.read_bytes() if kind == "file" else None)
    state_dir = StateDir(tmp_path / "state")
    file = ResolvFile(state_dir, path)
    dns = DnsState(("198.18.200.1", "2001:2:0:200::1"), ("braid.lab", "corp.example"), "br-a")
    asyncio.run(file.set(dns, {"br-a": 1}))
    assert path.read_text() == (f"{MARKER}\nnameserver 198.18.200.1\nnameserver "
                                "2001:2:0:200::1\nsearch braid.lab corp.example\n")
    assert not path.is_symlink() and os.stat(path).st_mode & 0o777 == 0o644
    assert target.read_text() == "nameserver 192.0.2.53\n"  # a link's target is not written
    assert asyncio.run(file.set(dns, {"br-a": 1})) == []  # the same again: nothing to do
    assert asyncio.run(file.revert()) == [f"DNS: {path} restored"]
    if kind == "absent":
        assert not path.exists() and not path.is_symlink()
    elif kind == "symlink":
        assert path.is_symlink() and os.readlink(path) == str(target)
    else:
        st = os.lstat(path)
        assert before[0] is not None
        assert path.read_bytes() == before[1]
        assert (st.st_mode, st.st_uid, st.st_gid) == (before[0].st_mode, before[0].st_uid,
                                                      before[0].st_gid)
    assert state_dir.read("resolv.conf.original.json") is None
    assert sorted(p.name for p in path.parent.iterdir()) == ([] if kind == "absent"
                                                             else ["resolv.conf"])


def test_a_file_someone_else_replaced_is_left_alone_on_disconnect(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.1\n")
    file = ResolvFile(StateDir(tmp_path / "state"), path)
    asyncio.run(file.set(DnsState(("198.18.200.1",), (), "br-a"), {}))
    path.write_text("nameserver 192.0.2.99\n")  # NetworkManager, say, after a reconnect
    changes = asyncio.run(file.revert())
    assert "replaced by someone else" in changes[0]
    assert path.read_text() == "nameserver 192.0.2.99\n"


# ---- resolvconf (a fake on PATH) ---------------------------------------------------------
FAKE_RESOLVCONF = """#!/bin/sh
# Records each call: its arguments and what came on stdin.
{{ printf 'argv:'; for a in "$@"; do printf ' %s' "$a"; done; printf '\\n'; cat; }} >> {log}
"""


def test_resolvconf_gets_one_record_and_loses_it_on_disconnect(
        lab: LabInfo, tmp_path: Path, sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "resolvconf.log"
    fake = bindir / "resolvconf"
    fake.write_text(FAKE_RESOLVCONF.format(log=log))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    original = resolv(lab)
    # Asked for: in a namespace of its own auto never picks resolvconf (a real one
    # writes the host's /run/resolvconf).
    h = Helper(lab, sock_dir / "rc.sock", tmp_path / "state", tmp_path / "rc.log",
               extra=("--dns", "resolvconf"))
    h.start()
    try:
        client = h.client()
        client.apply(dns_state(lab))
        assert log.read_text() == (f"argv: -a tun.braid -m 0 -x\nnameserver {SERVER_ADDRESS}\n"
                                   f"search {DOMAIN}\n")
        status = client.status()
        assert status.dns is not None and status.dns.mechanism == "resolvconf"
        client.apply(dns_state(lab))  # unchanged: not given again
        assert log.read_text().count("argv:") == 1
        client.down()
        assert log.read_text().splitlines()[-1] == "argv: -d tun.braid -f"
        assert resolv(lab) == original  # resolvconf's business, not the helper's

        # After kill -9 with the guard: the record is kept (adopted), and a disconnect
        # deletes it; without a guard the restart deletes it.
        client = h.client()
        client.apply(dns_state(lab))
        h.kill9()
        h.clients.clear()
        h.start()
        assert h.client().status().dns is not None
        assert log.read_text().splitlines()[-1] != "argv: -d tun.braid -f"
        h.client().down()
        assert log.read_text().splitlines()[-1] == "argv: -d tun.braid -f"
    finally:
        h.stop()
        h.cleanup()


# ---- systemd-resolved (a fake resolve1 on a private bus) ---------------------------------
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class FakeResolved:
    def __init__(self, lab: LabInfo, root: Path) -> None:
        self.lab = lab
        self.address = f"unix:path={root / 'system_bus'}"
        self.record = root / "resolved.json"
        self.root = root
        self.bus: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start_bus(self) -> None:
        config = self.root / "bus.conf"
        config.write_text(BUS_CONFIG.format(address=self.address))
        self.bus = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork",
                                     "--nopidfile", "--print-address=1"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.bus.stdout is not None
        assert self.bus.stdout.readline().strip(), "dbus-daemon did not start"

    def start(self) -> None:
        """resolved itself, in the helper's namespace (ifindexes are per namespace)."""
        self.record.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns(self.lab.name, "client"), sys.executable, "-m",
             "tests.helper.fake_resolved", "--bus", self.address, "--record", str(self.record)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        wait_until(self.record.exists, 10, message="the fake resolved never came up")

    def stop(self) -> None:
        for proc in (self.proc, self.bus):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)

    def state(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.record.read_text())
        return doc


def ifindex(lab: LabInfo, name: str) -> int:
    return int(in_client(lab, "import json, socket, sys\n"
                              "print(socket.if_nametoindex(sys.argv[1]))\n", name))


@pytest.fixture
def resolved(lab: LabInfo, tmp_path: Path) -> Iterator[FakeResolved]:
    fake = FakeResolved(lab, tmp_path)
    fake.start_bus()
    try:
        fake.start()
        yield fake
    finally:
        fake.stop()


def test_resolved_gets_per_link_dns_split_domains_and_a_revert(
        lab: LabInfo, tmp_path: Path, sock_dir: Path, resolved: FakeResolved,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", resolved.address)
    original = resolv(lab)
    h = Helper(lab, sock_dir / "rd.sock", tmp_path / "state", tmp_path / "rd.log",
               extra=("--dns", "resolved", "--verify-seconds", "0.5"))
    h.start()
    first, second = (g.client_interface for g in lab.gateways[:2])
    corp = {"via": second, "servers": ["10.20.0.53"], "domains": ["corp.example"]}
    try:
        client = h.client()
        client.apply(dns_state(lab, split=[corp]))
        i1, i2 = ifindex(lab, first), ifindex(lab, second)
        links = resolved.state()["links"]
        assert links[str(i1)] == {"name": first, "dns": [SERVER_ADDRESS],
                                  "domains": [[DOMAIN, False], [".", True]],
                                  "default_route": True}
        assert links[str(i2)] == {"name": second, "dns": ["10.20.0.53"],
                                  "domains": [["corp.example", False]],
                                  "default_route": False}
        status = client.status()
        assert status.dns is not None and (status.dns.mechanism, status.dns.active) == (
            "resolved", True)
        assert resolv(lab) == original  # resolved's job, not the file's

        # The default class moves: the DNS moves with it, the old link is reverted.
        third = lab.gateways[2].client_interface
        client.apply(dns_state(lab, via=third, split=[corp]))
        state = resolved.state()
        assert set(state["links"]) == {str(i2), str(ifindex(lab, third))}
        assert ["RevertLink", i1] in state["calls"]

        # resolved restarts and forgets everything: the helper gives it all again.
        assert resolved.proc is not None
        resolved.proc.terminate()
        resolved.proc.wait(10)
        resolved.start()
        wait_until(lambda: len(resolved.state()["links"]) == 2, 10,
                   message="the helper never gave a restarted resolved its DNS again")

        client.down()
        assert resolved.state()["links"] == {}
        assert client.status().dns is None
    finally:
        h.stop()
        h.cleanup()


# ---- the file it manages: part of the helper's configuration, checked ---------------------
@pytest.mark.parametrize(("value", "phrase"), [
    ("/tmp/resolv.conf", "is neither /etc/resolv.conf nor /etc/netns/NAME/resolv.conf"),
    ("/etc/passwd", "is neither"),
    ("/etc/netns/../resolv.conf", "is neither"),
    ("/etc/netns/x/../../shadow", "is neither"),
    ("/etc//resolv.conf", "is neither"),
    ("/etc/netns/braid-other-client/resolv.conf", "and braid-helper runs in "),
])
def test_a_resolv_conf_that_is_not_the_namespaces_own_is_refused_at_start(
        lab: LabInfo, tmp_path: Path, sock_dir: Path, value: str, phrase: str) -> None:
    h = Helper(lab, sock_dir / "v.sock", tmp_path / "state", tmp_path / "v.log",
               extra=("--resolv-conf", value))
    done = subprocess.run(h.argv(), cwd=REPO, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 2 and phrase in done.stderr, done.stderr
    assert "--resolv-conf" in done.stderr


def test_the_namespaces_own_file_named_outright(lab: LabInfo, tmp_path: Path,
                                                sock_dir: Path) -> None:
    """What the lab's helper is given (app/lab/nodes.py): written in place, so every
    process of the namespace (each has it mounted over /etc/resolv.conf) sees it."""
    path = nodes.client_resolv_conf(lab.name)
    original, inode = resolv(lab), os.stat(path).st_ino
    h = Helper(lab, sock_dir / "e.sock", tmp_path / "state", tmp_path / "e.log",
               extra=("--resolv-conf", str(path)))
    h.start()
    try:
        client = h.client()
        connected(client, lab, dns_state(lab))
        assert os.stat(path).st_ino == inode
        assert resolve(lab, FAR_NAME) == [SERVER_ADDRESS]
        client.down()
        assert resolv(lab) == original and os.stat(path).st_ino == inode
    finally:
        h.stop()
        h.cleanup()
