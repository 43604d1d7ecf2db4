"""The connection's state machine: the states a user lives through, and only those.

```
 DISCONNECTED --start--> CONNECTING --settled--> CONNECTED <--health--> DEGRADED
                              |                      |  ^                  |
                              |                 failover  failover done    |
                              |                      v  |                  |
                              |                  FAILING_OVER <------------+
  any active state --fail--> ERROR --recover--> CONNECTING (until settled again)
  any state but DISCONNECTED --stop--> DISCONNECTING --stopped--> DISCONNECTED
```

Why an explicit machine: the state used to be derived from flags on every read, and
``failing over`` was set and cleared before any snapshot showed it. Here every change
is a transition that the engine publishes at once, and a transition the table does not
allow is a bug (``InvalidTransition``), not a silently odd state.

ERROR is where Mullvad's tunnel state machine keeps blocking: the engine stays up, the
kill switch and the last applied state stay in the kernel, and only the cause clearing
(``recover``) or the user (``stop``) leaves it. Nothing here tears tunnels down.

Pure: time is passed in, so tests drive it without an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.model import ConnState, ErrorInfo

S = ConnState
ACTIVE = frozenset({S.CONNECTING, S.CONNECTED, S.DEGRADED, S.FAILING_OVER, S.ERROR})
RUNNING = frozenset({S.CONNECTED, S.DEGRADED, S.FAILING_OVER})


class InvalidTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class Transition:
    old: ConnState
    new: ConnState
    t: float
    why: str


class Connection:
    """One connection's state. Every method returns the transition it made, or None."""

    def __init__(self) -> None:
        self.state = ConnState.DISCONNECTED
        self.since = 0.0
        self.error: ErrorInfo | None = None
        self._settled = False

    def _go(self, new: ConnState, now: float, why: str) -> Transition | None:
        if new is self.state:
            return None
        old, self.state, self.since = self.state, new, now
        return Transition(old, new, now, why)

    def _require(self, allowed: frozenset[ConnState], event: str) -> None:
        if self.state not in allowed:
            raise InvalidTransition(f"{event} in state {self.state.value}")

    # -- inputs ---------------------------------------------------------------------

    def start(self, now: float) -> Transition | None:
        self._require(frozenset({S.DISCONNECTED}), "start")
        self._settled, self.error = False, None
        return self._go(S.CONNECTING, now, "connecting")

    def settled(self, now: float, degraded: bool) -> Transition | None:
        """Every class's first decision is in the kernel."""
        if self.state is not S.CONNECTING:
            return None
        self._settled = True
        return self._go(S.DEGRADED if degraded else S.CONNECTED, now, "connected")

    def health(self, now: float, degraded: bool) -> Transition | None:
        """The paths' health as it is now: a path lost, a class blocked or poor."""
        if self.state not in (S.CONNECTED, S.DEGRADED):
            return None
        return self._go(S.DEGRADED if degraded else S.CONNECTED, now,
                        "a path is lost or poor" if degraded else "every class is well")

    def failover_started(self, now: float) -> Transition | None:
        if self.state not in RUNNING:
            return None
        return self._go(S.FAILING_OVER, now, "moving traffic off a dead path")

    def failover_done(self, now: float, degraded: bool) -> Transition | None:
        """Every failover under way is over (its switch is in the kernel and its new path
        answers, or it was given up): the engine, which knows which decisions reached the
        kernel, says so once. No count here: a decision superseded before it was sent
        would leave a count that no switch ever takes back, and FAILING_OVER for good."""
        if self.state is not S.FAILING_OVER:
            return None
        return self._go(S.DEGRADED if degraded else S.CONNECTED, now, "failed over")

    def fail(self, now: float, error: ErrorInfo) -> Transition | None:
        """Something failed while connecting or connected: block, say why, keep trying."""
        if self.state not in ACTIVE:
            return None
        self.error = error
        if self.state is S.ERROR:
            return None
        return self._go(S.ERROR, now, error.what)

    def recover(self, now: float) -> Transition | None:
        """The cause cleared (the helper took the state again): settle afresh."""
        if self.state is not S.ERROR:
            return None
        self.error = None
        self._settled = False
        return self._go(S.CONNECTING, now, "recovered")

    def stop(self, now: float) -> Transition | None:
        if self.state in (S.DISCONNECTED, S.DISCONNECTING):
            return None
        return self._go(S.DISCONNECTING, now, "disconnecting")

    def stopped(self, now: float) -> Transition | None:
        self._require(frozenset({S.DISCONNECTING}), "stopped")
        return self._go(S.DISCONNECTED, now, "disconnected")

    # -- outputs --------------------------------------------------------------------

    @property
    def is_settled(self) -> bool:
        return self._settled and self.state in RUNNING
