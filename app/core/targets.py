"""What an engine connects to, and where it runs: one place for target resolution.

A *target* is a saved profile; a lab's profile is ``lab-<lab>`` and carries its lab's
name. A profile of the user's own gateways runs where the caller is, through the
system helper. A lab's runs inside the lab's client namespace, through the lab's own
helper, probing each gateway's tunnel address: that placement is the lab's to say, so
the lab registers a resolver here (app/lab/register.py) instead of the core importing
the lab (the core imports neither the lab nor the helper: tests/core/test_layering.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import BraidError
from app.core.profiles.model import Profile
from app.wire.protocol import DEFAULT_SOCKET

LAB_PROFILE_PREFIX = "lab-"
DEFAULT_LAB = "lab"
SYSTEM_HELPER = Path(DEFAULT_SOCKET)


def lab_profile_name(lab: str) -> str:
    return f"{LAB_PROFILE_PREFIX}{lab}"


@dataclass(frozen=True)
class ConnectTarget:
    profile: str  # profile name; a lab's profile is "lab-<lab>"
    lab: str | None = None  # set: run inside braid-<lab>-client with that lab's helper

    @classmethod
    def for_lab(cls, lab: str) -> ConnectTarget:
        return cls(profile=lab_profile_name(lab), lab=lab)

    @property
    def label(self) -> str:
        return f"lab {self.lab}" if self.lab else f"profile {self.profile}"


@dataclass(frozen=True)
class Placement:
    """Where an engine for a target runs and what it talks to."""

    helper_socket: Path
    netns: str | None = None  # a network namespace to enter (ip netns naming)
    probe_targets: dict[str, str] = field(default_factory=dict)  # gateway -> address


LabResolver = Callable[[str, Profile], Placement]
_lab_resolver: LabResolver | None = None


def register_lab(resolver: LabResolver) -> None:
    """The lab says how its targets are placed (called when app.lab.register loads)."""
    global _lab_resolver
    _lab_resolver = resolver


def placement(target: ConnectTarget, profile: Profile,
              helper_socket: Path = SYSTEM_HELPER) -> Placement:
    """Where ``target`` runs; BraidError when its lab is not there to say."""
    if target.lab is None:
        return Placement(helper_socket)
    if profile.lab != target.lab:
        raise BraidError(f"profile {profile.name} is not lab {target.lab}'s profile",
                         f"rebuild the lab: braid lab up --name {target.lab}")
    if _lab_resolver is None:
        raise BraidError(f"cannot connect to lab {target.lab}: the lab is not installed "
                         "with this Braid", "connect to a profile of your own gateways")
    return _lab_resolver(target.lab, profile)
