"""What the UI needs from the engine: the shape of `app.core.service.EngineHub`.

The UI depends on this protocol rather than the class so that views can be built and
tested by feeding them real `EngineSnapshot`s, and so that nothing here can reach into
the engine's internals: the UI reads snapshots and sends connect/disconnect, no more.
The UI never builds a target itself; it hands back one that `targets()` gave it, so the
protocol is generic in the target type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from app.core.model import EngineSnapshot

SnapshotSink = Callable[[EngineSnapshot], None]


class Target(Protocol):
    """A place to connect to (`app.core.service.ConnectTarget`)."""

    @property
    def profile(self) -> str: ...

    @property
    def lab(self) -> str | None: ...


T = TypeVar("T", bound=Target)


class EngineControl(Protocol[T]):
    """The commands the UI sends. All of them return at once (the engine has its own
    thread); results and failures come back as snapshots."""

    def connect(self, target: T) -> None: ...

    def disconnect(self) -> None: ...

    def shutdown(self, timeout: float = 10.0) -> None: ...

    def targets(self) -> list[T]: ...

    def attach_running(self) -> bool:
        """Show the engine that already runs (started by `braid up`, say), if any."""
        ...


def target_label(target: Target) -> str:
    """How a target is named in menus: the profile, and the lab it lives in."""
    return f"{target.profile} (lab {target.lab})" if target.lab else target.profile
