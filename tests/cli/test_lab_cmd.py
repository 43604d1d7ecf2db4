"""`braid lab ...` end to end through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import main
from app.lab import proc, topology
from tests.lab.conftest import leftovers, unique_lab


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_up_status_impair_exec_stream_down(capsys: pytest.CaptureFixture[str],
                                           config_dir: Path) -> None:
    lab = unique_lab()
    try:
        rc, out, _ = run(capsys, "lab", "up", "--name", lab, "--baseline", "hk", "--json")
        assert rc == 0
        up = json.loads(out)
        assert up["name"] == lab and len(up["gateways"]) == 3
        assert up["exit"] == "shared"  # the CLI's default
        assert "client_private_key" not in out  # keys are never printed

        rc, out, _ = run(capsys, "lab", "status", "--name", lab)
        assert rc == 0 and "path hk" in out and "helper" in out and "shared exit" in out
        assert "probe 198.19.32.1" in out and "exit (" in out

        rc, out, _ = run(capsys, "lab", "impair", "--name", lab, "--path", "tyo",
                         "--link", "backbone", "--delay-ms", "25")
        assert rc == 0 and "backbone up   delay 25 ms" in out and "wan      up   delay 30 ms" in out

        rc, out, _ = run(capsys, "lab", "impair", "--name", lab, "--path", "hk",
                         "--delay-ms", "40", "--burst-loss", "1,30", "--dir", "up")
        assert rc == 0 and "up   delay 40 ms, bursts 1/30 %" in out
        rc, out, _ = run(capsys, "lab", "status", "--name", lab, "--json")
        hk = json.loads(out)["paths"][0]
        assert hk["up"]["profile"]["burst_loss"] == [1.0, 30.0]
        assert hk["down"]["profile"]["delay_ms"] == 15

        rc, out, err = run(capsys, "lab", "impair", "--name", lab, "--path", "hk",
                           "--burst-loss", "lots")
        assert rc == 2 and "--burst-loss 'lots' is not two numbers" in err

        assert main(["lab", "exec", "--name", lab, "server", "--", "true"]) == 0
        assert main(["lab", "exec", "--name", lab, "server", "--", "false"]) == 1

        rc, out, _ = run(capsys, "lab", "stream", "--name", lab, "--baseline", "--pps", "100",
                         "--duration", "0.5", "--json")
        doc = json.loads(out)
        assert rc == 0 and doc["sent"] == 50 and doc["server_sources"] == 1
        assert doc["up_gap_ms"] is not None and doc["down_loss_pct"] is not None

        rc, out, _ = run(capsys, "lab", "stream", "--name", lab, "--baseline", "--pps", "100",
                         "--duration", "0.5", "--sticky")
        assert rc == 0 and "longest gap up" in out and "from 1 address(es), 0 ignored" in out

        # Wrong order: nothing is connected, so say so instead of 100 % loss or a timeout.
        for argv in (("stream", "--duration", "0.5"), ("transfer", "--size", "1")):
            rc, out, err = run(capsys, "lab", *argv, "--name", lab)
            assert rc == 2 and f"Braid is not up on lab '{lab}'" in err
            assert f"braid up --lab {lab}" in err

        rc, out, _ = run(capsys, "lab", "list")
        assert lab in out and "cn-us" in out
    finally:
        rc, out, _ = run(capsys, "lab", "down", "--name", lab)
    assert rc == 0 and lab not in topology.lab_names()


def test_up_with_separate_exits(capsys: pytest.CaptureFixture[str]) -> None:
    lab = unique_lab()
    try:
        rc, out, _ = run(capsys, "lab", "up", "--name", lab, "--exit", "separate",
                         "--no-helper")
        assert rc == 0 and "separate exits (each gateway its own NAT)" in out
        rc, out, _ = run(capsys, "lab", "status", "--name", lab, "--json")
        doc = json.loads(out)
        assert doc["exit"] == "separate" and "exit" not in doc["nodes"]
    finally:
        topology.destroy(lab)


def test_errors_go_to_stderr_with_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "lab", "status", "--name", "tnone")
    assert rc == 2 and "lab 'tnone' is not up" in err and "braid lab up --name tnone" in err
    rc, _, err = run(capsys, "lab", "up", "--name", "BAD", "--no-helper")
    assert rc == 2 and "not valid" in err


def test_down_all_removes_every_lab_found_also_half_built_ones(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # `--all` removes every lab on the machine, and other engineers' labs run meanwhile:
    # discovery is real (lab_names must find both of ours), but `--all` is shown only ours.
    whole, half = unique_lab(), unique_lab()
    try:
        topology.build(whole, "clean", start_helper=False, write_profile=False)
        # What a build killed early leaves: one namespace and no runtime dir.
        proc.ip("netns", "add", topology.netns(half, "client"))
        found = topology.lab_names()
        assert whole in found and half in found
        monkeypatch.setattr(topology, "lab_names", lambda: [n for n in found if n in (whole, half)])
        rc, out, _ = run(capsys, "lab", "down", "--all")
        assert rc == 0 and f"lab {whole!r} removed" in out and f"lab {half!r} removed" in out
        monkeypatch.undo()
        assert leftovers(whole) == [] and leftovers(half) == []
    finally:
        for name in (whole, half):
            topology.destroy(name)


def test_down_of_a_lab_that_is_not_there_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    lab = unique_lab()
    rc, out, _ = run(capsys, "lab", "down", "--name", lab)
    assert rc == 0 and out == f"lab {lab!r}: nothing to remove\n"
