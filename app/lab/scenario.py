"""Lab scenarios: the paths, their link profiles, and a timeline of changes (TOML).

The format is documented in docs/lab.md. Random episodes are expanded here, from their
seed, into ordinary timeline entries, so the relay only ever runs a concrete timeline and
the same seed always gives the same run.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from app.core.errors import BraidError
from app.lab.link import (
    BACKBONE,
    DIRECTIONS,
    LINKS,
    RAMPABLE,
    WAN,
    LinkProfile,
    check_changes,
    profile_from,
)

GATEWAY_NAME = re.compile(r"^[a-z][a-z0-9]{0,3}$")
MAX_PATHS = 8
BUILTIN_DIR = Path(__file__).parent / "scenarios"


CLEAR = LinkProfile()  # no delay, no loss: a link a scenario does not describe


@dataclass(frozen=True)
class PathSpec:
    name: str
    cost: float
    up: LinkProfile  # client -> gateway (the wan link)
    down: LinkProfile  # gateway -> client
    note: str = ""
    # The backbone behind the gateway: to the shared exit, or (separate exits) the
    # gateway's own way to the far side. Unset: no delay, no loss.
    backbone_up: LinkProfile = CLEAR
    backbone_down: LinkProfile = CLEAR

    def profile(self, link: str, direction: str) -> LinkProfile:
        if link == WAN:
            return self.up if direction == "up" else self.down
        return self.backbone_up if direction == "up" else self.backbone_down


@dataclass(frozen=True)
class TimelineEntry:
    """At `at_s` (seconds from lab start) change `path`'s `link` in `dirs`.

    With `for_s` and not `ramp`: the change holds for for_s seconds, then what was
    there before comes back. With `ramp`: the fields move linearly from their value at
    at_s to the new one over for_s seconds, and stay. Without for_s: a lasting change.
    """

    at_s: float
    path: str
    dirs: tuple[str, ...]
    changes: tuple[tuple[str, Any], ...]
    for_s: float | None = None
    ramp: bool = False
    link: str = WAN

    def to_json(self) -> dict[str, Any]:
        return {
            "at_s": self.at_s,
            "path": self.path,
            "link": self.link,
            "dirs": list(self.dirs),
            "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in self.changes},
            "for_s": self.for_s,
            "ramp": self.ramp,
        }

    @staticmethod
    def from_json(doc: dict[str, Any]) -> TimelineEntry:
        changes = check_changes(dict(doc["changes"]), "timeline")
        return TimelineEntry(
            at_s=float(doc["at_s"]),
            path=str(doc["path"]),
            dirs=tuple(doc["dirs"]),
            changes=tuple(sorted(changes.items())),
            for_s=None if doc.get("for_s") is None else float(doc["for_s"]),
            ramp=bool(doc.get("ramp", False)),
            link=str(doc.get("link", WAN)),
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    paths: tuple[PathSpec, ...]
    timeline: tuple[TimelineEntry, ...]  # sorted by at_s

    def path(self, name: str) -> PathSpec:
        return by_name(self.paths, name, f"scenario {self.name!r}")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def by_name(items: Sequence[N], name: str, owner: str) -> N:
    """The path called ``name``, or an error that lists the paths there are."""
    for item in items:
        if item.name == name:
            return item
    raise BraidError(f"{owner} has no path {name!r}",
                     f"use one of: {', '.join(i.name for i in items)}")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_scenario(spec: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    path = Path(spec)
    if isinstance(spec, str) and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", spec):
        builtin = BUILTIN_DIR / f"{spec}.toml"
        if builtin.is_file():
            path = builtin
        elif not path.is_file():
            raise BraidError(
                f"no scenario named {spec!r}",
                f"use one of {', '.join(builtin_names())}, or the path of a scenario file",
            )
    if not path.is_file():
        raise BraidError(
            f"scenario file {path} does not exist",
            f"give an existing file, or one of {', '.join(builtin_names())}",
        )
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BraidError(f"scenario file {path}: not valid TOML: {exc}", "fix the syntax") from exc
    return parse_scenario(doc, name=path.stem, where=str(path))


def parse_scenario(doc: dict[str, Any], *, name: str, where: str) -> Scenario:
    _only(doc, {"description", "path", "timeline", "random"}, where)
    raw_paths = doc.get("path")
    if not isinstance(raw_paths, list) or not raw_paths:
        raise BraidError(
            f"{where}: no [[path]] tables",
            "add at least one [[path]] with a name, e.g. name = \"hk\"",
        )
    if len(raw_paths) > MAX_PATHS:
        raise BraidError(f"{where}: {len(raw_paths)} paths", f"use at most {MAX_PATHS}")
    paths = tuple(_parse_path(p, f"{where}: path #{i + 1}") for i, p in enumerate(raw_paths))
    names = [p.name for p in paths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BraidError(f"{where}: path {dupes[0]!r} appears twice", "give each path its own name")
    timeline = [
        _parse_entry(e, f"{where}: timeline #{i + 1}", names)
        for i, e in enumerate(_tables(doc, "timeline", where))
    ]
    for i, r in enumerate(_tables(doc, "random", where)):
        timeline.extend(_expand_random(r, f"{where}: random #{i + 1}", names))
    timeline.sort(key=lambda e: e.at_s)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise BraidError(f"{where}: description must be a string", 'write description = "..."')
    return Scenario(name=name, description=description, paths=paths, timeline=tuple(timeline))


def _only(doc: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise BraidError(
                f"{where}: unknown key {key!r}", f"use only: {', '.join(sorted(allowed))}"
            )


def _tables(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BraidError(f"{where}: {key} must be an array of tables", f"write [[{key}]] blocks")
    return value


def _parse_path(raw: Any, where: str) -> PathSpec:
    if not isinstance(raw, dict):
        raise BraidError(f"{where}: must be a table", "write [[path]] blocks")
    name = raw.get("name")
    if not isinstance(name, str) or not GATEWAY_NAME.match(name):
        raise BraidError(
            f"{where}: name {name!r} is not a valid gateway name",
            "use 1-4 characters: a lowercase letter, then letters or digits (e.g. hk)",
        )
    where = f"{where} ({name})"
    cost = raw.get("cost", 1.0)
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
        raise BraidError(f"{where}: cost must be a number >= 0", "write e.g. cost = 1.0")
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise BraidError(f"{where}: note must be a string", 'write note = "..."')
    wan = _link_profiles({k: v for k, v in raw.items() if k not in {"name", "cost", "note"}},
                         where, "path")
    backbone = raw.get(BACKBONE, {})
    if not isinstance(backbone, dict):
        raise BraidError(f"{where}: backbone must be a table", "write [path.backbone]")
    bb = _link_profiles(backbone, f"{where} backbone", "path.backbone")
    return PathSpec(name=name, cost=float(cost), up=wan["up"], down=wan["down"], note=note,
                    backbone_up=bb["up"], backbone_down=bb["down"])


def _link_profiles(raw: dict[str, Any], where: str, table: str) -> dict[str, LinkProfile]:
    """One link's two directions: settings for both, then [table.up] / [table.down]."""
    base = profile_from({k: v for k, v in raw.items() if k not in {BACKBONE, *DIRECTIONS}},
                        where)
    per_dir: dict[str, LinkProfile] = {}
    for d in DIRECTIONS:
        sub = raw.get(d, {})
        if not isinstance(sub, dict):
            raise BraidError(f"{where}: {d} must be a table", f"write [{table}.{d}]")
        per_dir[d] = profile_from(sub, f"{where} {d}", base)
    return per_dir


def _dirs(raw: Any, where: str) -> tuple[str, ...]:
    if raw in (None, "both"):
        return DIRECTIONS
    if raw in DIRECTIONS:
        return (str(raw),)
    raise BraidError(f"{where}: dir = {raw!r}", 'use "up", "down" or "both"')


def _seconds(raw: Any, where: str, key: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise BraidError(f"{where}: {key} must be seconds >= 0, not {raw!r}", f"write {key} = 30")
    return float(raw)


def _link(raw: Any, where: str) -> str:
    if raw is None:
        return WAN
    if raw not in LINKS:
        raise BraidError(f"{where}: link = {raw!r}", f"use one of: {', '.join(LINKS)}")
    return str(raw)


def _parse_entry(raw: dict[str, Any], where: str, paths: list[str]) -> TimelineEntry:
    _only(raw, {"at", "path", "link", "dir", "for", "set", "ramp"}, where)
    if "at" not in raw:
        raise BraidError(f"{where}: no 'at'", "say when, in seconds from lab start: at = 30")
    path = raw.get("path")
    if path not in paths:
        raise BraidError(f"{where}: path {path!r} is not in this scenario", f"use one of {paths}")
    changes = raw.get("set")
    if not isinstance(changes, dict) or not changes:
        raise BraidError(f"{where}: no 'set'", "say what changes: set = { loss_pct = 15 }")
    checked = check_changes(changes, where)
    for_s = None if "for" not in raw else _seconds(raw["for"], where, "for")
    ramp = raw.get("ramp", False)
    if not isinstance(ramp, bool):
        raise BraidError(f"{where}: ramp must be true or false", "write ramp = true")
    if ramp:
        if for_s is None or for_s <= 0:
            raise BraidError(f"{where}: a ramp needs 'for' > 0", "say how long the drift takes")
        bad = [k for k in checked if k not in RAMPABLE]
        if bad or checked.get("rate_mbit", 0) is None:
            raise BraidError(
                f"{where}: cannot ramp {bad[0] if bad else 'rate_mbit to unlimited'}",
                f"ramp only numbers: {', '.join(RAMPABLE)}",
            )
    return TimelineEntry(
        at_s=_seconds(raw["at"], where, "at"),
        path=str(path),
        dirs=_dirs(raw.get("dir"), where),
        changes=tuple(sorted(checked.items())),
        for_s=for_s,
        ramp=ramp,
        link=_link(raw.get("link"), where),
    )


def _range(raw: Any, where: str, key: str) -> tuple[float, float]:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return (float(raw), float(raw))
    if (
        isinstance(raw, list)
        and len(raw) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
        and raw[0] <= raw[1]
    ):
        return (float(raw[0]), float(raw[1]))
    raise BraidError(f"{where}: {key} = {raw!r}", f"write {key} = [low, high] or one number")


def _expand_random(raw: dict[str, Any], where: str, paths: list[str]) -> list[TimelineEntry]:
    """Seeded random episodes: on each listed path, episodes with random gaps and lengths."""
    _only(raw, {"seed", "paths", "start", "until", "gap", "length", "link", "dir", "set"}, where)
    seed = raw.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BraidError(f"{where}: seed must be an integer", "write seed = 1")
    chosen = raw.get("paths", paths)
    if not isinstance(chosen, list) or not chosen or any(p not in paths for p in chosen):
        raise BraidError(f"{where}: paths = {chosen!r}", f"list paths of this scenario: {paths}")
    start = _seconds(raw.get("start", 0), where, "start")
    until = _seconds(raw.get("until", 3600), where, "until")
    gap = _range(raw.get("gap"), where, "gap")
    length = _range(raw.get("length"), where, "length")
    if gap[0] <= 0 or length[0] <= 0:
        raise BraidError(f"{where}: gap and length must be above 0", "write gap = [20, 60]")
    changes = raw.get("set")
    if not isinstance(changes, dict) or not changes:
        raise BraidError(f"{where}: no 'set'", "say what an episode does: set = { down = true }")
    ranges = {k: v for k, v in changes.items() if isinstance(v, list) and k != "burst_loss"}
    fixed = check_changes({k: v for k, v in changes.items() if k not in ranges}, where)
    for key, value in ranges.items():
        low, high = _range(value, where, key)
        check_changes({key: low}, where)
        check_changes({key: high}, where)
    dirs = _dirs(raw.get("dir"), where)
    link = _link(raw.get("link"), where)
    rng = random.Random(seed)
    out: list[TimelineEntry] = []
    for path in chosen:
        t = start + rng.uniform(*gap)
        while t < until:
            drawn = dict(fixed)
            for key, value in ranges.items():
                drawn[key] = round(rng.uniform(value[0], value[1]), 3)
            span = rng.uniform(*length)
            out.append(TimelineEntry(round(t, 3), path, dirs, tuple(sorted(drawn.items())),
                                     round(span, 3), link=link))
            t += span + rng.uniform(*gap)
    return out
