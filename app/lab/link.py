"""What one direction of one emulated path does to packets: the link profile.

Shared by the scenario parser, the relay and `braid lab impair`, so that a field means
the same thing and is checked the same way everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from app.core.errors import BraidError

DIRECTIONS: tuple[str, ...] = ("up", "down")  # up: towards the far side; down: back
# A path's links: the international one (client to gateway) and the backbone behind the
# gateway (to the shared exit, or with separate exits the gateway's own way to the far side).
WAN, BACKBONE = "wan", "backbone"
LINKS: tuple[str, ...] = (WAN, BACKBONE)


@dataclass(frozen=True)
class LinkProfile:
    """One direction of one path.

    delay_ms: one-way propagation delay added to every packet.
    jitter_ms: standard deviation of a normal variation around delay_ms (never below 0).
    loss_pct: random loss, each packet independently (in the Good state when burst_loss is on).
    burst_loss: Gilbert-Elliott (p_gb %, p_bg %): per packet, the chance to go from Good to
      Bad and from Bad back to Good; every packet in Bad is lost. Mean burst length is
      100/p_bg packets; mean loss from bursts is p_gb / (p_gb + p_bg).
    rate_mbit: serialisation rate, counting IP bytes (UDP payload + 28); None = unlimited.
    queue_ms: the finite queue in front of the rate limit, as the time a full queue takes
      to drain; a packet that finds it full is dropped (tail drop), so a full link adds
      up to queue_ms of delay before it loses.
    reorder_pct: chance that a packet ignores FIFO order and may overtake earlier ones
      (its jitter is then applied on its own); without it jitter never reorders.
    down: an outage: every packet is dropped.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    burst_loss: tuple[float, float] | None = None
    rate_mbit: float | None = None
    queue_ms: float = 100.0
    reorder_pct: float = 0.0
    down: bool = False

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["burst_loss"] = list(self.burst_loss) if self.burst_loss else None
        return doc

    def replace(self, changes: dict[str, Any]) -> LinkProfile:
        return dataclasses.replace(self, **check_changes(changes, "link profile"))


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LinkProfile))
# Fields a timeline ramp can drift smoothly (numbers that have a meaningful in-between).
RAMPABLE: tuple[str, ...] = ("delay_ms", "jitter_ms", "loss_pct", "rate_mbit", "reorder_pct")

_LIMITS: dict[str, tuple[float, float]] = {
    "delay_ms": (0.0, 10_000.0),
    "jitter_ms": (0.0, 5_000.0),
    "loss_pct": (0.0, 100.0),
    "rate_mbit": (0.01, 10_000.0),
    "queue_ms": (1.0, 10_000.0),
    "reorder_pct": (0.0, 100.0),
}


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BraidError(
            f"{where}: {key} must be a number, not {value!r}",
            f"write {key} as a number, e.g. {key} = 10",
        )
    low, high = _LIMITS[key]
    if not low <= float(value) <= high:
        raise BraidError(
            f"{where}: {key} = {value} is out of range",
            f"use a value from {low:g} to {high:g}",
        )
    return float(value)


def check_changes(changes: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate a partial profile (field -> value); returns it normalised.

    Raises BraidError naming the field and the allowed values, so that nothing is
    applied when any part is wrong.
    """
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in FIELDS:
            raise BraidError(
                f"{where}: unknown link setting {key!r}",
                f"use one of: {', '.join(FIELDS)}",
            )
        if key == "down":
            if not isinstance(value, bool):
                raise BraidError(f"{where}: down must be true or false", "write down = true")
            out[key] = value
        elif key == "burst_loss":
            out[key] = _burst(where, value)
        elif key == "rate_mbit" and value is None:
            out[key] = None
        else:
            out[key] = _number(where, key, value)
    return out


def _burst(where: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
    ):
        raise BraidError(
            f"{where}: burst_loss must be two percentages [p_gb, p_bg], not {value!r}",
            "write e.g. burst_loss = [1.0, 30.0] (1 % chance to enter a burst, 30 % to leave)",
        )
    p_gb, p_bg = float(value[0]), float(value[1])
    if not (0.0 <= p_gb <= 100.0 and 0.0 < p_bg <= 100.0):
        raise BraidError(
            f"{where}: burst_loss = {list(value)} is out of range",
            "p_gb must be 0..100 and p_bg above 0 up to 100 (percent per packet)",
        )
    return (p_gb, p_bg)


def profile_from(doc: dict[str, Any], where: str, base: LinkProfile | None = None) -> LinkProfile:
    return (base or LinkProfile()).replace(check_changes(doc, where))
