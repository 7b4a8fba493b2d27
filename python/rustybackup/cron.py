"""Cron schedules: the Rust-backed :class:`CronSchedule` and the common presets.

The presets build ordinary cron expressions, so ``str(daily(2))`` is ``"0 2 * * *"`` and
everything :class:`CronSchedule` does (DST rules, ``describe()``, pickling) applies.
"""

from __future__ import annotations

from datetime import tzinfo

from ._core import CronField as CronField
from ._core import CronSchedule as CronSchedule
from .errors import CronError

__all__ = ["CronField", "CronSchedule", "daily", "hourly", "monthly", "weekly"]

TzArg = str | tzinfo | None


def _part(name: str, value: int | str) -> str:
    """One field's text; bools and other types are refused with the field named."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CronError(f"{name}: expected an int or a cron field string, got {type(value).__name__}")
    text = str(value).strip()
    if not text or any(ch.isspace() for ch in text):
        raise CronError(f"{name}: {value!r} is not a single cron field")
    return text


def hourly(minute: int | str = 0, *, tz: TzArg = None, seed: str | None = None) -> CronSchedule:
    """Every hour at ``minute`` (``hourly(15)`` is ``15 * * * *``)."""
    return CronSchedule(f"{_part('minute', minute)} * * * *", tz, seed)


def daily(hour: int | str, minute: int | str = 0, *, tz: TzArg = None, seed: str | None = None) -> CronSchedule:
    """Every day at ``hour:minute`` (``daily(2)`` is ``0 2 * * *``)."""
    return CronSchedule(f"{_part('minute', minute)} {_part('hour', hour)} * * *", tz, seed)


def weekly(
    day_of_week: int | str,
    hour: int | str,
    minute: int | str = 0,
    *,
    tz: TzArg = None,
    seed: str | None = None,
) -> CronSchedule:
    """Every week on ``day_of_week`` (cron numbering: 0 or 7 = Sunday, or ``"mon"``)."""
    expr = f"{_part('minute', minute)} {_part('hour', hour)} * * {_part('day-of-week', day_of_week)}"
    return CronSchedule(expr, tz, seed)


def monthly(
    day: int | str,
    hour: int | str,
    minute: int | str = 0,
    *,
    tz: TzArg = None,
    seed: str | None = None,
) -> CronSchedule:
    """Every month on ``day`` (1-31, or ``"L"`` for the last day) at ``hour:minute``."""
    expr = f"{_part('minute', minute)} {_part('hour', hour)} {_part('day-of-month', day)} * *"
    return CronSchedule(expr, tz, seed)
