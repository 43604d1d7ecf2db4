"""`braid gateway ...` through the real CLI entry point: a description written 0600 and
refused when others can read it, each node's configuration printed without keys or
written for the node with them, applied as root on the node (a namespace here), and the
client's profile saved with its keys in the keyring."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from app.cli.main import main
from app.core.profiles.store import ProfileStore
from app.lab.topology import python_env
from tests.node.conftest import LOG_ROOT, Node

INIT = ["gateway", "init", "--gateway", "hk=198.51.100.11", "--gateway", "tyo=198.51.100.12",
        "--gateway", "sgp=198.51.100.13", "--exit", "la=203.0.113.10"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def on_node(node: Node, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", node.ns, "python3", "-m", "app.cli.main",
                           *argv, "--log-dir", str(LOG_ROOT / node.tag)],
                          capture_output=True, text=True, timeout=60, env=python_env())


def test_init_show_config_and_the_clients_profile(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path, config_dir: Path) -> None:
    nodes = tmp_path / "nodes.toml"
    rc, out, _ = run(capsys, *INIT, "--nodes", str(nodes))
    assert rc == 0 and (nodes.stat().st_mode & 0o777) == 0o600
    assert "gateway tyo: clients reach it at 198.51.100.12:51820, to the exit at " \
           "203.0.113.10:51822 (probe 10.77.102.1)" in out
    rc, _, err = run(capsys, *INIT, "--nodes", str(nodes))
    assert rc == 2 and "exists" in err  # not over an existing one

    rc, out, _ = run(capsys, "gateway", "show", "--nodes", str(nodes), "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["topology"] == "shared" and set(doc["nodes"]) == {
        "la", "hk", "tyo", "sgp"}
    assert "(hidden)" in out and "private_key = " not in out

    rc, out, _ = run(capsys, "gateway", "config", "hk", "--nodes", str(nodes))
    assert rc == 0 and json.loads(out)["tunnel"]["private_key"] == "(hidden)"
    state = tmp_path / "la.json"
    rc, out, _ = run(capsys, "gateway", "config", "la", "--nodes", str(nodes), "--out",
                     str(state))
    assert rc == 0 and (state.stat().st_mode & 0o777) == 0o600
    assert json.loads(state.read_text())["gateways"][0]["tunnel"]["private_key"] != "(hidden)"

    rc, out, _ = run(capsys, "gateway", "client", "--nodes", str(nodes), "--profile", "mine")
    assert rc == 0 and "one shared exit" in out
    store = ProfileStore()
    profile = store.load("mine")
    assert profile.shared_exit and [g.name for g in profile.gateways] == ["hk", "tyo", "sgp"]
    assert {g.addresses for g in profile.gateways} == {("10.77.0.2/32",)}
    assert [g.probe for g in profile.gateways] == ["10.77.101.1", "10.77.102.1", "10.77.103.1"]
    assert profile.gateway("hk").peer.endpoint == "198.51.100.11:51820"
    assert store.load_secrets(profile)["hk"].private_key in nodes.read_text()

    os.chmod(nodes, 0o644)
    rc, _, err = run(capsys, "gateway", "show", "--nodes", str(nodes))
    assert rc == 2 and "others can read it (mode 644)" in err and f"chmod 600 {nodes}" in err


def test_ipv6_in_the_description(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 config_dir: Path) -> None:
    nodes = tmp_path / "nodes.toml"
    assert main([*INIT, "--nodes", str(nodes)]) == 0
    capsys.readouterr()
    text = nodes.read_text().replace('client_subnet = "10.77.0.0/24"\n',
                                     'client_subnet = "10.77.0.0/24"\n'
                                     'client_subnet6 = "2001:db8:77::/64"\n')
    nodes.write_text(text)
    rc, out, _ = run(capsys, "gateway", "config", "la", "--nodes", str(nodes))
    assert rc == 0 and json.loads(out)["clients"] == ["10.77.0.0/24", "2001:db8:77::/64"]
    rc, out, _ = run(capsys, "gateway", "config", "hk", "--nodes", str(nodes))
    assert json.loads(out)["clients"][0]["allowed_ips"] == ["10.77.0.2/32", "2001:db8:77::2/128"]
    assert main(["gateway", "client", "--nodes", str(nodes), "--profile", "six"]) == 0
    hk = ProfileStore().load("six").gateway("hk")
    assert hk.addresses == ("10.77.0.2/32", "2001:db8:77::2/128")
    assert hk.peer.allowed_ips == ("0.0.0.0/0", "::/0")


def test_separate_exits(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                        config_dir: Path) -> None:
    nodes = tmp_path / "nodes.toml"
    assert main(["gateway", "init", "--nodes", str(nodes), "--gateway", "hk=198.51.100.11",
                 "--separate", "--egress", "ens3"]) == 0
    rc, out, _ = run(capsys, "gateway", "client", "--nodes", str(nodes), "--profile", "vpn")
    assert rc == 0 and "separate exits" in out
    profile = ProfileStore().load("vpn")
    assert not profile.shared_exit and profile.gateway("hk").probe == "10.77.1.1"
    rc, out, _ = run(capsys, "gateway", "config", "hk", "--nodes", str(nodes))
    assert json.loads(out)["egress"] == "ens3"


def test_apply_on_the_node(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           node: Node) -> None:
    # Names of this run's own (wireguard-go's sockets share one directory).
    hk, tyo, sgp = (f"{c}{node.tag}" for c in "hts")
    nodes = tmp_path / "nodes.toml"
    assert main(["gateway", "init", "--nodes", str(nodes), "--gateway", f"{hk}=198.51.100.11",
                 "--gateway", f"{tyo}=198.51.100.12", "--gateway", f"{sgp}=198.51.100.13",
                 "--exit", "la=203.0.113.10"]) == 0
    capsys.readouterr()
    done = on_node(node, "gateway", "apply", hk, "--nodes", str(nodes))
    assert done.returncode == 0 and f"gateway {hk} applied:" in done.stdout, done.stderr
    again = on_node(node, "gateway", "apply", hk, "--nodes", str(nodes))
    assert f"gateway {hk} applied: no changes" in again.stdout
    # The exit on the same node, from its own state file: the roles do not touch each
    # other's names and ranges.
    state = tmp_path / "la.json"
    assert main(["gateway", "config", "la", "--nodes", str(nodes), "--out", str(state)]) == 0
    done = on_node(node, "gateway", "apply", "--state", str(state), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["role"] == "exit"
    assert "no changes" in on_node(node, "gateway", "apply", hk, "--nodes",
                                   str(nodes)).stdout
    links = node.sh("ip", "-br", "link")
    assert all(f"{n} " in links for n in (f"bg-{hk}", f"bg-{hk}-x", f"bx-{hk}", f"bx-{tyo}",
                                           f"bx-{sgp}"))
    done = on_node(node, "gateway", "apply", hk, "--nodes", str(nodes), "--down")
    assert done.returncode == 0 and f"gateway {hk} removed" in done.stdout
    links = node.sh("ip", "-br", "link")
    assert "bg-" not in links and f"bx-{hk} " in links
    assert on_node(node, "gateway", "apply", "--state", str(state), "--down").returncode == 0
    assert "bx-" not in node.sh("ip", "-br", "link")
