"""Durations as people type them: ``7d``, ``12h``, ``1d12h``, ``90m`` (retention windows,
max_duration, verification budgets). One parser for the whole package."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import ConfigError

__all__ = ["parse_duration", "format_duration"]

_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_DURATION = re.compile(r"(\d+)([wdhms])")


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` or a run of them (``"1d12h"``).

    Raises:
        ConfigError: (a ValueError) anything else, or a zero duration; the message quotes
            the text.
    """
    spec = text.strip().lower()
    if not spec or _DURATION.sub("", spec) != "":
        raise ConfigError(f"invalid duration {_cut(text)}: use a number and a unit (w, d, h, m, s), e.g. 7d or 1d12h")
    try:
        total = sum((int(n) * _UNITS[unit] for n, unit in _DURATION.findall(spec)), timedelta())
    except (OverflowError, ValueError):  # past timedelta's range, or more digits than int() reads
        raise ConfigError(f"invalid duration {_cut(text)}: too long (at most {timedelta.max.days} days)") from None
    if total <= timedelta(0):
        raise ConfigError(f"invalid duration {_cut(text)}: it must be longer than zero")
    return total


def _cut(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def format_duration(value: timedelta) -> str:
    """The shortest ``parse_duration`` text for `value` (``2h``, ``90m``, ``45s``)."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
