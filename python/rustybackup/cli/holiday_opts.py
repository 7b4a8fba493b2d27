"""``--holidays``, ``--holidays-file`` and ``--exclude-date``: one definition for every command.

``job add``, ``window add`` and ``cron next`` take the same three options and build one
:class:`HolidayCalendar` from them (None when none is given).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..holidays_cal import HolidayCalendar

F = TypeVar("F", bound=Callable[..., Any])


def holiday_options(fn: F) -> F:
    """Adds the three options; the command receives ``holidays_region``, ``holidays_files``, ``exclude_dates``."""
    fn = click.option(
        "--exclude-date",
        "exclude_dates",
        multiple=True,
        metavar="YYYY-MM-DD",
        help="Skip this date too (repeatable).",
    )(fn)
    fn = click.option(
        "--holidays-file",
        "holidays_files",
        multiple=True,
        metavar="F.ics",
        type=click.Path(dir_okay=False),
        help="Skip the dates of this iCalendar file's events (repeatable).",
    )(fn)
    fn = click.option(
        "--holidays",
        "holidays_region",
        default=None,
        metavar="CC[-SUB]",
        help="Skip public holidays of a country or subdivision, e.g. DE or DE-BY.",
    )(fn)
    return fn


def calendar_from(region: str | None, files: tuple[str, ...], dates: tuple[str, ...]) -> HolidayCalendar | None:
    """The calendar the options describe, or None when none was given."""
    return HolidayCalendar.build(region, files, dates)
