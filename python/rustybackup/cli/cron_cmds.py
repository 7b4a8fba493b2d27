"""``rustybackup cron``: try cron expressions from the shell.

``rustybackup cron next "0 2 * * 1-5" -n 3 --tz Europe/Berlin`` prints the next three
times and the English description; invalid input is one line on stderr and exit code 2.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..cron import CronSchedule
from ..errors import CronError
from ..windows import load_zone
from .context import print_json
from .holiday_opts import calendar_from, holiday_options


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise CronError(f"-n: {text!r} is not a whole number") from None
    if not 1 <= n <= 100_000:
        raise CronError(f"-n: {n} is out of range 1-100000")
    return n


def _after(text: str | None, schedule: CronSchedule) -> datetime:
    if text is None:
        return datetime.now(UTC).astimezone(schedule.tz)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise CronError(f"--after: {text!r} is not an ISO-8601 date and time") from None


@click.group("cron")
def cron_group() -> None:
    """Cron expressions: next run times and plain-English descriptions.

    Example: rustybackup cron next "30 2 * * mon-fri" -n 5
    """


@cron_group.command("next")
@click.argument("expr")
@click.option("-n", "count", default="5", metavar="N", show_default=True, help="How many times to print.")
@click.option("--tz", "zone", default="UTC", show_default=True, help="IANA time zone of the schedule.")
@click.option("--after", default=None, metavar="ISO-8601", help="Start after this time (naive = in --tz); default now.")
@click.option("--seed", default=None, help="Seed for H (hashed) fields, e.g. the job id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@holiday_options
def next_cmd(
    expr: str,
    count: str,
    zone: str,
    after: str | None,
    seed: str | None,
    as_json: bool,
    holidays_region: str | None,
    holidays_files: tuple[str, ...],
    exclude_dates: tuple[str, ...],
) -> None:
    """Print the next N times EXPR fires, and what it means.

    With --holidays/--holidays-file/--exclude-date, times on an excluded date (in --tz) are
    marked with the holiday's name: a job with that calendar records them SKIPPED.

    Example: rustybackup cron next "0 2 * * 1-5" -n 3 --tz Europe/Berlin --holidays DE-BY
    """
    n = _count(count)
    schedule = CronSchedule(expr, zone, seed)
    calendar = calendar_from(holidays_region, holidays_files, exclude_dates)
    start = _after(after, schedule)
    times = schedule.next_n(start, n)
    tz = load_zone(zone)
    skipped = [calendar.name_at(t, tz) if calendar else None for t in times]
    if as_json:
        print_json(
            {
                "expression": str(schedule),
                "tz": zone,
                "description": schedule.describe(),
                "after": start.isoformat(),
                "times": [t.isoformat() for t in times],
                "skipped": [{"time": t.isoformat(), "holiday": h} for t, h in zip(times, skipped, strict=True) if h],
            }
        )
        return
    click.echo(f"{schedule}  ({zone}): {schedule.describe()}")
    for t, holiday in zip(times, skipped, strict=True):
        click.echo(t.isoformat() + (f"  skipped: {holiday}" if holiday else ""))


def register(group: click.Group) -> None:
    """Adds ``cron`` and its subcommands to the top-level group."""
    group.add_command(cron_group)
