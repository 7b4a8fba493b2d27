"""``rustybackup plan``: forecast every job from its history and suggest start times.

For each enabled job: P50/P90 of its duration and size (``rustybackup.forecast``), whether
its P90 still fits its window at its current cron time (a warning is logged when not),
and a suggested start from ``rustybackup.plan`` that fits every job into its window.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ..durations import parse_duration
from ..errors import ConfigError
from ..forecast import DEFAULT_WINDOW, JobForecast, forecast_job, p90_overrun
from ..jobs import Job
from ..plan import Placement, PlanTask, plan
from ..windows import load_zone
from .context import CliState, pass_state, print_json
from .schedule_cmds import _scheduler, _table

log = logging.getLogger(__name__)


def _at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--after: {text!r} is not an ISO-8601 date and time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _fmt(d: timedelta) -> str:
    minutes = round(d.total_seconds() / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"  # pragma: no cover - the loop returns at TiB


def suggested_cron(job: Job, start: datetime) -> str | None:
    """The job's expression with the suggested minute and hour, when that keeps its meaning."""
    fields = job.schedule.split()
    if len(fields) != 5 or fields[2] != "*" or fields[4] != "*":
        return None  # a day-of-week or day-of-month field would need shifting across midnight
    local = start.astimezone(load_zone(job.tz))
    return " ".join([str(local.minute), str(local.hour), *fields[2:]])


@click.command("plan")
@click.option(
    "--after",
    default=None,
    metavar="ISO-8601",
    help="Plan the windows' next periods after this time.",
)
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=int,
    help="Jobs that may run at once.",
)
@click.option("--step", default="5m", show_default=True, help="Grid of suggested start times.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def plan_cmd(state: CliState, after: str | None, concurrency: int, step: str, as_json: bool) -> None:
    """Forecast each job's duration and size and suggest start times that fit its window.

    Example: rustybackup plan --concurrency 2
    """
    start_after = _at(after)
    scheduler = _scheduler(state)
    windows = {w.id: w for w in scheduler.list_windows()}
    jobs = [j for j in scheduler.list_jobs() if j.enabled]
    tasks: list[PlanTask] = []
    forecasts: dict[str, JobForecast] = {}
    warnings: dict[str, str | None] = {}
    for j in jobs:
        window = windows.get(j.window_id) if j.window_id else None
        cron_start = j.cron.next_after(start_after)
        if window is not None and j.window_policy == "defer":
            cron_start = window.next_open(cron_start)  # when the scheduler will really start it
        at = window.next_open(start_after) if window is not None else cron_start
        runs = scheduler.history(job_id=j.id, status="completed", limit=DEFAULT_WINDOW)
        fc = forecast_job(j.id, runs, at, load_zone(j.tz))
        forecasts[j.id] = fc
        warnings[j.id] = p90_overrun(window, cron_start, fc.duration_p90)
        if warnings[j.id]:
            log.warning("job %s: %s", j.id, warnings[j.id])
        tasks.append(PlanTask(j.id, j.priority, window, fc.duration_p90, cron_start))
    placements = plan(tasks, start_after, concurrency, parse_duration(step))
    rows = [_row(j, forecasts[j.id], p, warnings[j.id]) for j, p in zip(jobs, placements, strict=True)]
    if as_json:
        print_json({"after": start_after.isoformat(), "concurrency": concurrency, "jobs": rows})
        return
    _table(
        f"plan after {start_after.isoformat()} (concurrency {concurrency})",
        [
            "job",
            "window",
            "P50",
            "P90",
            "read P90",
            "now",
            "suggested start",
            "P90 end",
            "cron",
            "note",
        ],
        [
            [
                r["id"],
                r["window"] or "-",
                r["p50_text"],
                r["p90_text"],
                _size(r["bytes_read_p90"]),
                "OVERRUNS" if r["current_problem"] else "ok",
                r["start"],
                r["end"] or "-",
                r["cron"] or "-",
                r["note"],
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r["current_problem"]:
            click.echo(f"warning: job {r['id']}: {r['current_problem']}", err=True)


def _row(job: Job, fc: JobForecast, p: Placement, problem: str | None) -> dict[str, Any]:
    zone = load_zone(job.tz)
    d = fc.duration
    return {
        "id": job.id,
        "window": job.window_id,
        "priority": job.priority,
        "runs": d.n_runs if d else 0,
        "duration_p50": d.p50 if d else None,
        "duration_p90": d.p90 if d else None,
        "duration_trend_per_day": d.slope_per_day if d else None,
        "p50_text": _fmt(timedelta(seconds=d.p50)) if d else "-",
        "p90_text": _fmt(timedelta(seconds=d.p90)) if d else "-",
        "bytes_read_p50": fc.bytes_read.p50 if fc.bytes_read else None,
        "bytes_read_p90": fc.bytes_read.p90 if fc.bytes_read else None,
        "bytes_written_p90": fc.bytes_written.p90 if fc.bytes_written else None,
        "current_problem": problem,
        "start": p.start.astimezone(zone).isoformat(),
        "end": p.end.astimezone(zone).isoformat() if p.end else None,
        "fits": p.fits,
        "note": p.note,
        "cron": suggested_cron(job, p.start) if p.end is not None and p.opens is not None else None,
    }


def register(group: click.Group) -> None:
    group.add_command(plan_cmd)
