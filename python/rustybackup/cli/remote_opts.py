"""Options shared by the commands that upload (backup, copy): bandwidth by time of day."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from ..errors import ConfigError

if TYPE_CHECKING:
    # Imported when a limit is given: upload_limits pulls in time zones and the holiday
    # calendars (~0.1 s of every `backup` otherwise).
    from ..upload_limits import UploadSchedule

F = TypeVar("F", bound=Callable[..., object])


def upload_limit_options(f: F) -> F:
    """``--upload-limit RATE@HH:MM-HH:MM`` (repeatable, first match wins) and ``--upload-tz``."""
    f = click.option(
        "--upload-tz",
        default="UTC",
        show_default=True,
        help="Time zone of the --upload-limit windows.",
    )(f)
    f = click.option(
        "--upload-limit",
        "upload_limits",
        multiple=True,
        metavar="RATE@HH:MM-HH:MM",
        help="Cap uploads to remote repositories in a daily window, e.g. 50MiB/s@22:00-06:00 (repeatable).",
    )(f)
    return f


def upload_schedule(limits: tuple[str, ...], tz: str) -> UploadSchedule | None:
    """The schedule the options give, None when there is none; a usage error names the bad one."""
    if not limits:
        return None
    from ..upload_limits import UploadSchedule

    try:
        return UploadSchedule.parse(limits, tz=tz)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--upload-limit") from None
