"""Typed reads of a decoded JSON document, each error naming the field's path.

The validators of every desired state (the helper's, and the gateway and exit roles')
are written with these, so a wrong field reads the same everywhere:
``tunnels[1].peers[0].endpoint: not an IP:port``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from app.wire.fields import FieldError

T = TypeVar("T")


_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 48
_QUOTE.maxlevel = 2
_QUOTE.maxlist = _QUOTE.maxdict = 4


def quote(value: Any) -> str:
    """A caller's value as an error or a log line may show it: repr, at most ~60
    characters and two levels deep, whatever was sent (a 1 MB string, a list nested
    a thousand deep), so that quoting a bad value never costs more than the refusal."""
    return _QUOTE.repr(value)


class StateError(ValueError):
    """A field of a document is wrong. ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def obj(doc: Any, path: str, allowed: Collection[str],
        required: Collection[str] = ()) -> dict[str, Any]:
    """A JSON object with only ``allowed`` keys and every ``required`` one."""
    if not isinstance(doc, dict):
        raise StateError(path, "must be a JSON object")
    unknown = sorted(str(k) for k in set(doc) - set(allowed))
    if unknown:
        raise StateError(join(path, unknown[0][:64]), "unknown field")
    for key in sorted(required):
        if key not in doc:
            raise StateError(join(path, key), "missing")
    return doc


def lst(value: Any, path: str, limit: int, *, min_len: int = 0) -> list[Any]:
    if not isinstance(value, list):
        raise StateError(path, "must be a list")
    if len(value) > limit:
        raise StateError(path, f"too many entries ({len(value)} > {limit})")
    if len(value) < min_len:
        raise StateError(path, f"needs at least {min_len} entr{'y' if min_len == 1 else 'ies'}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise StateError(path, "must be true or false")
    return value


def integer(value: Any, path: str, lo: int, hi: int) -> int:
    # bool is an int in Python; JSON true is not a number here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise StateError(path, "must be an integer")
    if not lo <= value <= hi:
        raise StateError(path, f"{value} is out of range {lo}..{hi}")
    return value


def opt_integer(value: Any, path: str, lo: int, hi: int) -> int | None:
    return None if value is None else integer(value, path, lo, hi)


def string(value: Any, path: str, max_len: int = 256) -> str:
    if not isinstance(value, str):
        raise StateError(path, "must be a string")
    if len(value) > max_len:
        raise StateError(path, f"too long (more than {max_len} characters)")
    return value


def field(value: Any, path: str, check: Callable[[str], T], max_len: int = 64) -> T:
    """A string checked by a field rule (fields.py); its FieldError gets the path."""
    text = string(value, path, max_len)
    try:
        return check(text)
    except FieldError as exc:
        raise StateError(path, str(exc)) from None


def number_field(value: Any, path: str, check: Callable[[int], int]) -> int:
    """An integer checked by a field rule (fields.py)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise StateError(path, "must be an integer")
    try:
        return check(value)
    except FieldError as exc:
        raise StateError(path, str(exc)) from None


def unique(items: list[Any] | tuple[Any, ...], path: str, what: str) -> None:
    seen: set[Any] = set()
    for i, item in enumerate(items):
        if item in seen:
            raise StateError(f"{path}[{i}]", f"duplicate {what}")
        seen.add(item)


def each(value: Any, path: str, limit: int, read: Callable[[Any, str], T],
         *, min_len: int = 0) -> tuple[T, ...]:
    """Every entry of a list, read by ``read(entry, path[i])``."""
    return tuple(read(v, f"{path}[{i}]")
                 for i, v in enumerate(lst(value, path, limit, min_len=min_len)))


def plain(value: Any) -> Any:
    """Tuples to lists, recursively: a dataclass's asdict() as JSON would write it."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
