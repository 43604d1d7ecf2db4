"""Profiles as TOML (docs/profiles.md): written without keys, read as strictly as an
imported .conf (unknown keys and wrong types are errors naming the table and field)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import tomli_w

from app.core.profiles.model import (
    DEFAULT_TUNING,
    FORMAT_VERSION,
    ClassTuning,
    Gateway,
    Peer,
    Profile,
    Settings,
    Weights,
)

_HEADER = (
    "# Braid profile. Keys are not here: they are in the system keyring\n"
    "# (service \"braid\", user \"<profile>/<gateway>/private\"). Format: docs/profiles.md\n"
)


def _gateway_doc(gw: Gateway) -> dict[str, Any]:
    """A gateway as TOML; None fields are left out (TOML has no null)."""
    doc = asdict(gw)
    peer = {k: v for k, v in doc.pop("peer").items() if v is not None}
    doc = {k: v for k, v in doc.items() if v is not None}
    doc["peer"] = peer
    return doc


def profile_to_toml(profile: Profile) -> str:
    doc: dict[str, Any] = {"version": FORMAT_VERSION, "name": profile.name}
    if profile.lab is not None:
        doc["lab"] = profile.lab
    if profile.shared_exit:
        doc["shared_exit"] = True
    doc["weights"] = asdict(profile.weights)
    settings = _settings_doc(profile.settings)
    if settings:
        doc["settings"] = settings
    doc["gateways"] = [_gateway_doc(gw) for gw in profile.gateways]
    return _HEADER + tomli_w.dumps(doc)


def _settings_doc(s: Settings) -> dict[str, Any]:
    """Only what differs from the defaults: a profile file stays short and a later
    release's better default reaches those who never chose."""
    base = Settings()
    doc: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in asdict(s).items()
                           if k != "tuning" and getattr(base, k) != getattr(s, k)}
    if s.tuning:
        doc["classes"] = {cls: asdict(t) for cls, t in s.tuning}
    return doc


def _settings_from(t: _Table) -> Settings:
    d = Settings()
    tuning = []
    if "classes" in t.doc:
        classes = t.table("classes")
        for cls in sorted(classes.doc):
            if cls not in DEFAULT_TUNING:
                raise ValueError(f"{classes.where}: {cls!r} is not a steered class "
                                 f"({', '.join(DEFAULT_TUNING)})")
            c = classes.table(cls)
            base = DEFAULT_TUNING[cls]
            tuning.append((cls, ClassTuning(
                margin=c.float_("margin", base.margin),
                dwell_s=c.float_("dwell_s", base.dwell_s),
                hold_down_s=c.float_("hold_down_s", base.hold_down_s),
                unusable_dwell_s=c.float_("unusable_dwell_s", base.unusable_dwell_s))))
            c.done()
        classes.done()
    copies = t.str_("copies", required=False)
    settings = Settings(
        always_on=t.bool_("always_on", d.always_on), lan_access=t.bool_("lan_access",
                                                                        d.lan_access),
        exclude=t.strs("exclude"), copies=d.copies if copies is None else copies,
        bulk_after_mb=t.float_("bulk_after_mb", d.bulk_after_mb), tuning=tuple(tuning))
    t.done()
    return settings


class _Table:
    """Typed reads from one TOML table; errors name the table and field; unknown keys
    are errors too (a typo must not silently become a default)."""

    def __init__(self, doc: Mapping[str, Any], where: str) -> None:
        self.doc = doc
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, kinds: type | tuple[type, ...], what: str,
             required: bool) -> Any:
        self.used.add(key)
        if key not in self.doc:
            if required:
                raise ValueError(f"{self.where}: {key} is missing")
            return None
        value = self.doc[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{self.where}: {key} must be {what}, not {value!r}")
        return value

    def str_(self, key: str, required: bool = True) -> Any:
        return self._get(key, str, "a string", required)

    def bool_(self, key: str, default: bool = False) -> bool:
        self.used.add(key)
        value = self.doc.get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self.where}: {key} must be true or false, not {value!r}")
        return value

    def int_(self, key: str) -> Any:
        return self._get(key, int, "a whole number", False)

    def float_(self, key: str, default: float) -> float:
        value = self._get(key, (int, float), "a number", False)
        return default if value is None else float(value)

    def strs(self, key: str) -> tuple[str, ...]:
        value = self._get(key, list, "a list of strings", False) or []
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.where}: {key} must be a list of strings")
        return tuple(value)

    def table(self, key: str) -> _Table:
        value = self._get(key, dict, "a table", True)
        return _Table(value, f"{self.where}.{key}")

    def tables(self, key: str) -> list[_Table]:
        value = self._get(key, list, "an array of tables", True)
        if not all(isinstance(v, dict) for v in value):
            raise ValueError(f"{self.where}: {key} must be an array of tables ([[{key}]])")
        return [_Table(v, f"{self.where}.{key}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.doc) - self.used)
        if unknown:
            raise ValueError(f"{self.where}: unknown key {unknown[0]!r}")


def _gateway_from(t: _Table) -> Gateway:
    p = t.table("peer")
    peer = Peer(public_key=p.str_("public_key"), endpoint=p.str_("endpoint", required=False),
                allowed_ips=p.strs("allowed_ips"),
                persistent_keepalive=p.int_("persistent_keepalive"))
    p.done()
    gw = Gateway(name=t.str_("name"), interface=t.str_("interface"), addresses=t.strs("addresses"),
                 dns=t.strs("dns"), mtu=t.int_("mtu"), listen_port=t.int_("listen_port"),
                 peer=peer, cost=t.float_("cost", 1.0), probe=t.str_("probe", required=False),
                 source=t.str_("source", required=False))
    t.done()
    return gw


def profile_from_toml(doc: Mapping[str, Any]) -> Profile:
    """A Profile from parsed TOML; ValueError says which field is wrong. Validate the
    result with validate_profile()."""
    top = _Table(doc, "profile")
    version = top.int_("version")
    if version != FORMAT_VERSION:
        raise ValueError(f"format version {version!r} is not {FORMAT_VERSION}")
    w = top.table("weights") if "weights" in doc else _Table({}, "weights")
    defaults = Weights()
    weights = Weights(latency=w.float_("latency", defaults.latency),
                      loss=w.float_("loss", defaults.loss),
                      cost=w.float_("cost", defaults.cost),
                      jitter=w.float_("jitter", defaults.jitter))
    w.done()
    profile = Profile(name=top.str_("name"), lab=top.str_("lab", required=False),
                      gateways=tuple(_gateway_from(g) for g in top.tables("gateways")),
                      weights=weights, shared_exit=top.bool_("shared_exit"),
                      settings=_settings_from(top.table("settings")) if "settings" in doc
                      else Settings())
    top.done()
    return profile
