"""A profile's settings as a form shows them (the app's Settings dialog), and the form
saved back, through the same rules as an import (rules.validate_profile) and the
profile store: every field is text as the user typed it; a value that is not a number
is an error that names its field, and so is one the rules refuse; nothing is saved
unless every field is right.

No Qt here: the dialog (app/ui/settings_dialog.py) only shows a SettingsForm and hands
one back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from app.core.errors import BraidError
from app.core.profiles.model import DEFAULT_TUNING, ClassTuning, Profile, Weights
from app.core.profiles.rules import validate_profile
from app.core.profiles.store import ProfileStore

WEIGHT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Weights))
TUNING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ClassTuning))
STEERED: tuple[str, ...] = tuple(DEFAULT_TUNING)  # the classes a decision moves
FIX = "correct the field (docs/profiles.md says what each one takes)"


@dataclass
class SettingsForm:
    """What the dialog edits, by field: numbers as text."""

    costs: dict[str, str] = field(default_factory=dict)  # gateway -> cost
    weights: dict[str, str] = field(default_factory=dict)  # latency, loss, cost, jitter
    tuning: dict[str, dict[str, str]] = field(default_factory=dict)  # class -> field -> text
    lan_access: bool = True
    always_on: bool = False
    copies: str = "auto"
    bulk_after_mb: str = ""


def number_text(value: float) -> str:
    """A number as a form shows it: 0.4, 10, 1.5 (no 10.0, no 0.40000000000000002)."""
    return f"{value:g}"


def form_of(profile: Profile) -> SettingsForm:
    s = profile.settings
    return SettingsForm(
        costs={gw.name: number_text(gw.cost) for gw in profile.gateways},
        weights={n: number_text(getattr(profile.weights, n)) for n in WEIGHT_FIELDS},
        tuning={cls: {n: number_text(getattr(s.class_tuning(cls), n)) for n in TUNING_FIELDS}
                for cls in STEERED},
        lan_access=s.lan_access, always_on=s.always_on, copies=s.copies,
        bulk_after_mb=number_text(s.bulk_after_mb))


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise BraidError(f"{where}: {name}: {text.strip()!r} is not a number", FIX) from None
    if not math.isfinite(value):
        raise BraidError(f"{where}: {name}: {text.strip()!r} is not a finite number", FIX)
    return value


def apply_form(profile: Profile, form: SettingsForm) -> Profile:
    """``profile`` with the form's values, validated as an imported profile is;
    BraidError naming the field otherwise. Pure."""
    where = f"profile {profile.name!r}"
    gateways = tuple(
        replace(gw, cost=_number(form.costs[gw.name], f"gateway {gw.name!r}: cost", where))
        if gw.name in form.costs else gw for gw in profile.gateways)
    weights = replace(profile.weights, **{
        n: _number(form.weights[n], f"weights.{n}", where)
        for n in WEIGHT_FIELDS if n in form.weights})
    tuning = dict(profile.settings.tuning)
    for cls, values in form.tuning.items():
        base = profile.settings.class_tuning(cls)
        chosen = replace(base, **{n: _number(values[n], f"settings.classes.{cls}.{n}", where)
                                  for n in TUNING_FIELDS if n in values})
        # Only what differs from the default is kept: a later release's better default
        # reaches those who never chose (as the codec writes settings).
        if chosen == DEFAULT_TUNING[cls]:
            tuning.pop(cls, None)
        else:
            tuning[cls] = chosen
    settings = replace(
        profile.settings, lan_access=form.lan_access, always_on=form.always_on,
        copies=form.copies,
        bulk_after_mb=(_number(form.bulk_after_mb, "settings.bulk_after_mb", where)
                       if form.bulk_after_mb.strip() else profile.settings.bulk_after_mb),
        tuning=tuple(sorted(tuning.items())))
    return validate_profile(replace(profile, gateways=gateways, weights=weights,
                                    settings=settings))


def save_form(store: ProfileStore, name: str, form: SettingsForm) -> Profile:
    """Load profile ``name``, apply the form, save it (keys untouched): all or nothing."""
    profile = apply_form(store.load(name), form)
    store.save(profile, {})
    return profile
