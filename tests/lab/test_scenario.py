"""Scenario files: the built-ins parse, random episodes are reproducible, errors are clear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core.errors import BraidError
from app.lab.scenario import TimelineEntry, builtin_names, load_scenario, parse_scenario


def parse(doc: dict[str, Any]) -> Any:
    return parse_scenario(doc, name="t", where="t.toml")


def test_builtins_parse_with_the_paths_they_promise() -> None:
    assert {"clean", "cn-us", "flaky"} <= set(builtin_names())
    assert [p.name for p in load_scenario("clean").paths] == ["hk", "tyo", "sgp"]
    cn = load_scenario("cn-us")
    us = cn.path("us")
    # The seed's case: ~280 ms round trip, ~8 % loss on the direct path.
    assert us.up.delay_ms + us.down.delay_ms == pytest.approx(280, abs=10)
    round_trip_loss = 1 - (1 - us.up.loss_pct / 100) * (1 - us.down.loss_pct / 100)
    assert round_trip_loss == pytest.approx(0.08, abs=0.01)
    assert all(cn.path(p).up.loss_pct < us.up.loss_pct for p in ("hk", "tyo", "sgp"))
    assert cn.timeline and load_scenario("flaky").timeline


def test_per_direction_tables_override_the_path() -> None:
    scen = parse({"path": [{"name": "hk", "delay_ms": 10, "up": {"loss_pct": 2}}]})
    hk = scen.path("hk")
    assert (hk.up.delay_ms, hk.up.loss_pct) == (10, 2)
    assert (hk.down.delay_ms, hk.down.loss_pct) == (10, 0)


def test_a_path_has_a_backbone_behind_its_gateway() -> None:
    scen = parse({"path": [{"name": "hk", "delay_ms": 10,
                            "backbone": {"delay_ms": 70, "down": {"loss_pct": 1}}},
                           {"name": "tyo"}],
                  "timeline": [{"at": 5, "path": "hk", "link": "backbone", "for": 2,
                                "set": {"down": True}}],
                  "random": [{"seed": 1, "link": "backbone", "gap": [5, 10],
                              "length": [1, 2], "until": 30, "set": {"loss_pct": 3}}]})
    hk = scen.path("hk")
    assert (hk.up.delay_ms, hk.backbone_up.delay_ms, hk.backbone_down.delay_ms) == (10, 70, 70)
    assert (hk.backbone_up.loss_pct, hk.backbone_down.loss_pct) == (0, 1)
    assert scen.path("tyo").backbone_up.delay_ms == 0  # undescribed: clear
    assert {e.link for e in scen.timeline} == {"backbone"}
    assert TimelineEntry.from_json(scen.timeline[0].to_json()) == scen.timeline[0]


def test_cn_us_splits_each_path_and_keeps_its_totals() -> None:
    cn = load_scenario("cn-us")
    # The whole way, client to Los Angeles, as the sources in the file give it.
    total = {p.name: p.up.delay_ms + p.backbone_up.delay_ms for p in cn.paths}
    assert total == pytest.approx({"us": 140.3, "hk": 88, "tyo": 75, "sgp": 120})
    assert all(cn.path(p).backbone_up.delay_ms > 50 for p in ("hk", "tyo", "sgp"))
    assert cn.path("us").backbone_up.delay_ms < 1  # the direct path's gateway is in LA
    drift = next(e for e in cn.timeline if e.path == "sgp" and e.ramp)
    assert drift.link == "backbone"
    assert cn.path("sgp").up.delay_ms + dict(drift.changes)["delay_ms"] == 150


def test_random_episodes_are_the_same_for_the_same_seed() -> None:
    doc = {"path": [{"name": "hk"}, {"name": "tyo"}],
           "random": [{"seed": 5, "gap": [5, 10], "length": [1, 2], "until": 100,
                       "set": {"loss_pct": [5, 20]}}]}
    first, second = parse(doc).timeline, parse(doc).timeline
    assert first == second and len(first) > 10
    assert all(5 <= dict(e.changes)["loss_pct"] <= 20 and 1 <= (e.for_s or 0) <= 2
               for e in first)
    assert [e.at_s for e in first] == sorted(e.at_s for e in first)
    doc["random"][0]["seed"] = 6
    assert parse(doc).timeline != first


@pytest.mark.parametrize(("doc", "says"), [
    ({}, "no [[path]]"),
    ({"path": [{"name": "HongKong"}]}, "not a valid gateway name"),
    ({"path": [{"name": "hk"}, {"name": "hk"}]}, "appears twice"),
    ({"path": [{"name": "hk", "delay": 5}]}, "unknown link setting 'delay'"),
    ({"path": [{"name": "hk", "loss_pct": 120}]}, "loss_pct = 120 is out of range"),
    ({"path": [{"name": "hk", "delay_ms": "fast"}]}, "delay_ms must be a number"),
    ({"path": [{"name": "hk", "burst_loss": [1]}]}, "burst_loss must be two percentages"),
    ({"path": [{"name": "hk"}], "timeline": [{"at": 1, "path": "xx", "set": {"down": True}}]},
     "path 'xx' is not in this scenario"),
    ({"path": [{"name": "hk"}], "timeline": [{"path": "hk", "set": {"down": True}}]},
     "no 'at'"),
    ({"path": [{"name": "hk"}], "timeline": [{"at": 1, "path": "hk", "ramp": True,
                                              "set": {"delay_ms": 9}}]}, "a ramp needs 'for'"),
    ({"path": [{"name": "hk"}], "timeline": [{"at": 1, "path": "hk", "for": 5, "ramp": True,
                                              "set": {"down": True}}]}, "cannot ramp down"),
    ({"path": [{"name": "hk"}], "random": [{"gap": [1, 2], "length": [1, 2],
                                            "set": {"down": True}}]}, "seed must be an integer"),
    ({"path": [{"name": "hk"}], "wobble": 1}, "unknown key 'wobble'"),
    ({"path": [{"name": "hk", "backbone": {"delay": 5}}]}, "backbone: unknown link setting"),
    ({"path": [{"name": "hk", "backbone": 5}]}, "backbone must be a table"),
    ({"path": [{"name": "hk"}], "timeline": [{"at": 1, "path": "hk", "link": "lan",
                                              "set": {"down": True}}]}, "link = 'lan'"),
])
def test_errors_name_what_is_wrong_and_what_to_do(doc: dict[str, Any], says: str) -> None:
    with pytest.raises(BraidError) as err:
        parse(doc)
    assert says in err.value.what
    assert err.value.fix


def test_files_unknown_names_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(BraidError, match="no scenario named 'nowhere'") as err:
        load_scenario("nowhere")
    assert "cn-us" in err.value.fix
    bad = tmp_path / "bad.toml"
    bad.write_text("[[path]]\nname = \n")
    with pytest.raises(BraidError, match="not valid TOML"):
        load_scenario(bad)
    good = tmp_path / "mine.toml"
    good.write_text('[[path]]\nname = "a"\ndelay_ms = 3\n')
    assert load_scenario(good).path("a").up.delay_ms == 3
