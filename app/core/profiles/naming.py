"""Gateway names from whatever file names providers use.

A gateway name must pass app/wire/fields.check_gateway_name (1-12 of a-z 0-9 '-',
starting with a letter) because its tunnel is ``br-<name>`` and a Linux interface name
has at most 15 characters. Providers name their files ``se-got-wg-001.conf``,
``wg-JP-FREE-12.conf``, ``JP-FREE#12.conf`` or ``mullvad-us-nyc-wg-301.conf``; these
functions turn any of them into a valid, recognisable name, deterministically, so that
importing the same file again gives the same name. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

from app.wire.fields import GATEWAY_NAME_MAX

_OTHER = re.compile(r"[^a-z0-9]+")
_TRAILING_DIGITS = re.compile(r"[0-9]+\Z")
FALLBACK = "gw"  # a file name with nothing usable in it ("#1.conf" gives gw-1)


def _clean(text: str) -> str:
    """Lower-case ASCII letters and digits, every other run of characters one '-'.
    Accents are dropped rather than replaced (Zürich -> zurich)."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _OTHER.sub("-", ascii_text.lower()).strip("-")


def _join_from_right(tokens: list[str], limit: int) -> str | None:
    """The tokens with the fewest '-' removed, rightmost first, that fit ``limit``
    (se-got-wg-001 -> se-got-wg001), or None if even all joined do not fit."""
    for joins in range(len(tokens)):
        keep = len(tokens) - joins
        name = "-".join([*tokens[: keep - 1], "".join(tokens[keep - 1:])])
        if len(name) <= limit:
            return name
    return None


def shorten(name: str, limit: int = GATEWAY_NAME_MAX) -> str:
    """``name`` (already cleaned) cut to ``limit`` characters, keeping what tells files
    apart: the end of a provider's name is its most specific part (the server number,
    the city), its start often the provider's name, common to all its files. So: join
    words from the right; if that is not enough, drop words from the left; a single word
    too long keeps its start and its trailing number."""
    if len(name) <= limit:
        return name
    tokens = name.split("-")
    for start in range(len(tokens)):
        joined = _join_from_right(tokens[start:], limit)
        if joined is not None and joined[0].isalpha():
            return joined
    word = "".join(tokens)
    digits = _TRAILING_DIGITS.search(word)
    tail = digits.group()[-(limit // 2):] if digits else ""
    return word[: limit - len(tail)] + tail


def gateway_name_from_file(file_name: str) -> str:
    """The gateway name a file gives: its name without ``.conf``, cleaned and shortened
    (``se-got-wg-001.conf`` -> ``se-got-wg001``). Always a valid gateway name."""
    stem = file_name[:-5] if file_name.lower().endswith(".conf") else file_name
    name = _clean(stem) or FALLBACK
    if not name[0].isalpha():
        name = f"{FALLBACK}-{name}"
    return shorten(name)


def unique_gateway_name(base: str, taken: Collection[str]) -> str:
    """``base``, or ``base-2``, ``base-3``, ... (shortened to fit) if it is taken."""
    if base not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        name = shorten(base, GATEWAY_NAME_MAX - len(suffix)).rstrip("-") + suffix
        if name not in taken:
            return name
        number += 1


def legacy_gateway_name(file_name: str) -> str:
    """The name Braid gave a file before names were cleaned (its stem, lower-cased): a
    gateway imported then, whose source file is not recorded, came from a file whose
    legacy name is its name."""
    return file_name.removesuffix(".conf").lower()
