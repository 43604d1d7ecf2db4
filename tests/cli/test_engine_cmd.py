"""The engine commands' pure parts: rendering a snapshot, choosing a target."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.cli.engine_cmd import engine_config, render, render_event, resolve_target
from app.core.errors import BraidError
from app.core.model import ConnState, EngineSnapshot, Event, PathSnapshot


def snapshot() -> EngineSnapshot:
    path = PathSnapshot(name="hk", interface="br-hk", up=True, suspected=False, rtt_ms=30.0,
                        rtt_smoothed_ms=31.0, rtt_p50_ms=30.5, rtt_p95_ms=35.0,
                        jitter_ms=0.4, loss=0.01, score=0.93, cost=1.0,
                        handshake_age_s=12.0, rx_bps=64_000, tx_bps=32_000,
                        classes=("default",))
    down = PathSnapshot(name="tyo", interface="br-tyo", up=False, suspected=False,
                        rtt_ms=None, rtt_smoothed_ms=None, rtt_p50_ms=None, rtt_p95_ms=None,
                        jitter_ms=None, loss=0.0, score=0.0, cost=2.0, handshake_age_s=None,
                        rx_bps=0, tx_bps=0)
    ev = Event(t=0.0, kind="switch", cls="default", from_path="tyo", to_path="hk",
               reason="failover: tyo declared down", detection_ms=171.2, switch_ms=60.4)
    return EngineSnapshot(t=0.0, state=ConnState.DEGRADED, profile="work",
                          paths=(path, down), classes={"default": ("hk",)}, events=(ev,))


def test_render_shows_paths_classes_and_events() -> None:
    text = render(snapshot().to_json())
    lines = text.splitlines()
    assert lines[0] == "braid work: degraded (default -> hk)"
    assert lines[1].split()[:3] == ["PATH", "STATE", "RTT"]
    assert lines[2].split() == ["hk", "up", "31.0", "35.0", "0.4", "1.0%", "0.93", "1", "12s",
                                "64", "32", "default"]
    assert lines[3].split()[:3] == ["tyo", "down", "-"]
    doc = snapshot().to_json()
    doc["paths"][1]["suspected"] = True  # not answered yet, not declared down
    assert render(doc).splitlines()[3].split()[:2] == ["tyo", "connecting"]
    assert "failover: tyo declared down (detected in 171 ms, switched in 60.4 ms)" in text


def test_render_of_a_closed_class_and_nothing_running() -> None:
    doc = snapshot().to_json()
    doc["classes"] = {"default": []}
    assert "default -> CLOSED" in render(doc)
    doc["state"] = "connecting"  # no decision yet: waiting for measurements, not closed
    assert render(doc).splitlines()[0] == "braid work: connecting (default -> waiting)"
    idle = {"state": "disconnected", "profile": None, "paths": [], "classes": {},
            "events": [], "error": None}
    assert render(idle) == "braid: disconnected"


def test_render_event_without_paths_or_times() -> None:
    ev = {"t": 0.0, "kind": "error", "cls": None, "from_path": None, "to_path": None,
          "reason": "the helper refused the plan", "detection_ms": None, "switch_ms": None}
    assert render_event(ev).endswith("error: the helper refused the plan")


def test_target_needs_a_choice_when_there_are_several_profiles(
        config_dir: Path) -> None:
    args = argparse.Namespace(lab=None, profile=None)
    with pytest.raises(BraidError, match="which profile"):
        resolve_target(args)
    lab = resolve_target(argparse.Namespace(lab="lab", profile=None))
    assert (lab.profile, lab.lab) == ("lab-lab", "lab")


def test_bad_tuning_is_a_clear_error() -> None:
    with pytest.raises(BraidError, match="margin"):
        engine_config(argparse.Namespace(margin=2.0, dwell=None, hold_down=None))
    cfg = engine_config(argparse.Namespace(margin=None, dwell=1.0, hold_down=None))
    assert cfg.decide.dwell_s == 1.0 and cfg.decide.hold_down_s == 15.0
