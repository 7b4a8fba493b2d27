"""``rustybackup job ...``, ``window ...``, ``run`` and ``history``: the scheduler's CLI.

Job and window changes go through :class:`BackupScheduler`, so the configuration file is
validated and replaced atomically exactly as from Python.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from datetime import datetime, time, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.table import Table

from ..durations import format_duration
from ..enums import BackupType, ExecutionStatus
from ..errors import BackupError, ConfigError
from ..jobs import ScheduledBackup
from ..ratelimit import format_rate, parse_rate
from ..repo_url import is_url
from ..scheduler import BackupScheduler
from ..upload_limits import UploadSchedule
from ..windows import BackupWindow, business_hours, off_hours
from .context import CliState, closed_at_end, pass_state, print_json, print_table
from .holiday_opts import calendar_from, holiday_options
from .metrics_cmds import parse_window, serve_metrics
from .ops_opts import JobOps, duration_value, ops_options
from .remote_opts import upload_limit_options, upload_schedule

log = logging.getLogger(__name__)


class _ConfigOnlyManager:
    """Stands in for BackupManager where only jobs and windows change (no backups run)."""

    def __init__(self, repository: Path, catalog_url: str | None = None) -> None:
        self.repository = repository
        # A shared catalog: the jobs live there (nodes.py).
        self.catalog_url = catalog_url

    def backup(
        self,
        database: str,
        backup_type: BackupType,
        tags: tuple[str, ...] = (),
        progress: Any = None,
        cancel: Any = None,
    ) -> Any:
        raise BackupError("this command does not run backups")

    def apply_retention(self, database: str, policy: Any, dry_run: bool = False) -> list[str]:
        raise BackupError("this command does not apply retention")


def open_manager(repo: Path, catalog: str | None = None) -> Any:
    """The repository's BackupManager (imported late: the engine is a separate module)."""
    import rustybackup

    manager_cls = getattr(rustybackup, "BackupManager", None)
    if manager_cls is None:
        raise BackupError("the backup engine (rustybackup.BackupManager) is not available in this build")
    return manager_cls(repo, catalog=catalog) if catalog else manager_cls(repo)


def _scheduler(
    state: CliState, *, real: bool = False, upload: UploadSchedule | None = None, **node: Any
) -> BackupScheduler:
    if state.url is not None:
        # Its configuration and run history are files beside a local repository (or rows
        # of a shared catalog); a job reaches a remote one through its target.
        raise click.UsageError(
            f"the scheduler keeps its jobs and history beside a local repository (--repo DIR); "
            f"to back up to {state.url}, add the job with `job add ... --target {state.url}`"
        )
    repo = state.require_repo()
    if not repo.is_dir():
        raise ConfigError(f"{repo}: no such repository directory (run 'rustybackup init' first)")
    if not real:
        # Jobs, windows and history only: closed with the command (`run` closes its own,
        # after the notifications are out).
        return closed_at_end(BackupScheduler(_ConfigOnlyManager(repo, state.catalog), **node))
    manager = open_manager(repo, state.catalog) if state.catalog else open_manager(repo)
    if hasattr(manager, "close"):
        closed_at_end(manager)
    if upload is not None:
        # The scheduled backups' uploads (to s3:// mirrors) go at the window's pace.
        manager.upload_limits = upload
    return BackupScheduler(manager, **node)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    print_table(table, prose=("when", "error"))


def _hhmm(ctx: click.Context, param: click.Parameter, value: str | None) -> time | None:
    if value is None:
        return None
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time of day HH:MM") from None


# --- job ---------------------------------------------------------------------------------


@click.group("job")
def job_group() -> None:
    """Scheduled backup jobs.

    Example: rustybackup job list --json
    """


@job_group.command("add")
@click.argument("job_id")
@click.option("--db", "database", required=True, help="Database name as registered in the repository.")
@click.option(
    "--type", "backup_type", type=click.Choice([t.value for t in BackupType]), default="full", show_default=True
)
@click.option("--cron", "cron", required=True, help="Cron expression, e.g. '0 2 * * *'.")
@click.option("--tz", default="UTC", show_default=True, help="Zone the cron expression is read in.")
@click.option("--window", "window_id", default=None, help="Only run inside this backup window.")
@click.option("--window-policy", type=click.Choice(["skip", "defer"]), default="skip", show_default=True)
@click.option("--priority", type=int, default=128, show_default=True, help="0-255, higher runs first.")
@click.option("--max-duration", callback=duration_value, default=None, help="Cancel after e.g. 2h, 90m.")
@click.option("--retention", default=None, help="redundancy=N | window=7d | last=N,daily=N,...")
@click.option("--misfire", type=click.Choice(["run_once", "skip"]), default="run_once", show_default=True)
@click.option("--tag", "tags", multiple=True, help="Tag for the backup sets (repeatable).")
@click.option("--name", default=None, help="Human-readable name (default: the id).")
@click.option("--io-limit", default=None, metavar="RATE", help="Cap the source reads, e.g. 50MiB/s.")
@click.option(
    "--node-label", "node_labels", multiple=True, help="Shared catalog: run only on nodes with this label (repeatable)."
)
@click.option(
    "--target",
    "target",
    default=None,
    metavar="REPO",
    help="Write to this repository (s3://bucket/prefix or a directory) instead of --repo's.",
)
@upload_limit_options
@holiday_options
@ops_options
@pass_state
def job_add(
    state: CliState,
    job_id: str,
    database: str,
    backup_type: str,
    cron: str,
    tz: str,
    window_id: str | None,
    window_policy: str,
    priority: int,
    max_duration: Any,
    retention: str | None,
    misfire: str,
    tags: tuple[str, ...],
    name: str | None,
    io_limit: str | None,
    node_labels: tuple[str, ...],
    target: str | None,
    upload_limits: tuple[str, ...],
    upload_tz: str,
    holidays_region: str | None,
    holidays_files: tuple[str, ...],
    exclude_dates: tuple[str, ...],
    ops: JobOps,
) -> None:
    """Add a scheduled backup job.

    With --target the job writes to that repository (its database registered there),
    at the pace of its own --upload-limit windows, else of `run --upload-limit`.

    Example: rustybackup job add nightly --db app --type full --cron '0 2 * * *' --window off
    """
    job = ScheduledBackup(
        job_id,
        name or job_id,
        database,
        BackupType(backup_type),
        cron,
        priority=priority,
        retention=retention,
        max_duration=max_duration,
        tags=tags,
        window_id=window_id,
        misfire=misfire,
        window_policy=window_policy,
        tz=tz,
        holidays=calendar_from(holidays_region, holidays_files, exclude_dates),
        notify=ops.notify,
        hooks=ops.hooks,
        io_limit=parse_rate(io_limit, "--io-limit") if io_limit is not None else None,
        node_labels=node_labels,
        # A relative --target is the caller's: the job keeps it absolute.
        repository=target if target is None or is_url(target) else str(Path(target).absolute()),
        upload_limits=upload_limits,
        upload_tz=upload_tz,
    )
    scheduler = _scheduler(state)
    scheduler.add_job(job)
    nxt = scheduler.next_run_times().get(job_id)
    click.echo(f"added job {job_id}; next run {nxt.isoformat() if nxt else 'never (scheduler disabled)'}")


@job_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def job_list(state: CliState, as_json: bool) -> None:
    """List jobs with their next run time.

    Example: rustybackup job list --json
    """
    scheduler = _scheduler(state)
    times = scheduler.next_run_times()
    rows: list[dict[str, Any]] = []
    jobs = scheduler.list_jobs()
    for j in jobs:
        nxt = times.get(j.id)
        off = j.holiday_at(nxt) if nxt else None
        rows.append(
            {
                "id": j.id,
                "kind": j.kind,
                "database": j.database,
                "type": getattr(j, "backup_type", None),
                "schedule": j.schedule,
                "tz": j.tz,
                "priority": j.priority,
                "window": j.window_id,
                "window_policy": j.window_policy,
                "misfire": j.misfire,
                "enabled": j.enabled,
                "max_duration": format_duration(j.max_duration) if j.max_duration else None,
                "retention": getattr(j, "retention", None),
                "next_run": nxt.isoformat() if nxt else None,
                "holidays": j.holidays.to_json() if j.holidays else None,
                "next_run_skipped_for": off,
                "io_limit": format_rate(j.io_limit) if isinstance(j, ScheduledBackup) and j.io_limit else None,
                "notify": j.notify.to_json() if j.notify else None,
                "hooks": j.hooks.to_json() if j.hooks else None,
                "repository": j.repository,
                "upload_limits": list(j.upload_limits) if isinstance(j, ScheduledBackup) else [],
            }
        )
    if as_json:
        print_json({"enabled": scheduler.enabled, "jobs": rows})
        return
    _table(
        "jobs" + ("" if scheduler.enabled else " (scheduler disabled)"),
        ["id", "database", "repository", "type", "schedule", "tz", "prio", "window", "holidays", "enabled", "next run"],
        [
            [
                r["id"],
                r["database"],
                r["repository"] or "(this one)",
                str(r["type"] or r["kind"]),
                r["schedule"],
                r["tz"],
                str(r["priority"]),
                r["window"] or "-",
                j.holidays.describe() if j.holidays else "-",
                "yes" if r["enabled"] else "no",
                (r["next_run"] or "-")
                + (f" (skipped: {r['next_run_skipped_for']})" if r["next_run_skipped_for"] else ""),
            ]
            for r, j in zip(rows, jobs, strict=True)
        ],
    )


@job_group.command("remove")
@click.argument("job_id")
@pass_state
def job_remove(state: CliState, job_id: str) -> None:
    """Remove a job (its history stays in the catalog).

    Example: rustybackup job remove nightly
    """
    _scheduler(state).remove_job(job_id)
    click.echo(f"removed job {job_id}")


def _set_enabled(state: CliState, job_id: str | None, enabled: bool) -> None:
    """Switches one job, or the whole scheduler when no id is given."""
    scheduler = _scheduler(state)
    word = "enabled" if enabled else "disabled"
    if job_id is None:
        if enabled:
            scheduler.enable()
        else:
            scheduler.disable()
        click.echo(f"scheduler {word}")
    else:
        scheduler.set_job_enabled(job_id, enabled)
        click.echo(f"{word} job {job_id}")


@job_group.command("enable")
@click.argument("job_id", required=False)
@pass_state
def job_enable(state: CliState, job_id: str | None) -> None:
    """Enable a job, or the whole scheduler when no id is given.

    Example: rustybackup job enable nightly
    """
    _set_enabled(state, job_id, True)


@job_group.command("disable")
@click.argument("job_id", required=False)
@pass_state
def job_disable(state: CliState, job_id: str | None) -> None:
    """Disable a job, or the whole scheduler when no id is given.

    Example: rustybackup job disable nightly
    """
    _set_enabled(state, job_id, False)


# --- window -----------------------------------------------------------------------------


@click.group("window")
def window_group() -> None:
    """Backup windows (when jobs may run).

    Example: rustybackup window add office --preset business-hours --tz Europe/Berlin
    """


@window_group.command("add")
@click.argument("window_id")
@click.option("--preset", type=click.Choice(["business-hours", "off-hours"]), default=None)
@click.option("--days", default=None, help="e.g. mon-fri or sat,sun")
@click.option("--start", callback=_hhmm, default=None, help="HH:MM")
@click.option("--end", callback=_hhmm, default=None, help="HH:MM (<= start crosses midnight)")
@click.option("--tz", default="UTC", show_default=True)
@click.option("--name", default=None)
@holiday_options
@pass_state
def window_add(
    state: CliState,
    window_id: str,
    preset: str | None,
    days: str | None,
    start: time | None,
    end: time | None,
    tz: str,
    name: str | None,
    holidays_region: str | None,
    holidays_files: tuple[str, ...],
    exclude_dates: tuple[str, ...],
) -> None:
    """Add a window from a preset or from --days/--start/--end.

    Example: rustybackup window add nights --days mon-fri --start 18:00 --end 06:00 --tz Europe/Paris
    """
    custom = (days, start, end)
    if preset is not None:
        if any(v is not None for v in custom):
            raise click.UsageError("give either --preset or --days/--start/--end, not both")
        window = business_hours(window_id, tz) if preset == "business-hours" else off_hours(window_id, tz)
    else:
        if days is None or start is None or end is None:
            raise click.UsageError("a custom window needs --days, --start and --end (or use --preset)")
        window = BackupWindow(window_id, name or window_id, start, end, days, tz)
    calendar = calendar_from(holidays_region, holidays_files, exclude_dates)
    if calendar is not None:
        window = BackupWindow(window_id, window.name, window.start, window.end, window.days, tz, window.also, calendar)
    _scheduler(state).add_window(window)
    click.echo(f"added window {window_id}")


_DAY = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@window_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def window_list(state: CliState, as_json: bool) -> None:
    """List windows.

    Example: rustybackup window list --json
    """
    windows = _scheduler(state).list_windows()
    if as_json:
        from ..config import window_to_json

        print_json([window_to_json(w) for w in windows])
        return
    rows = []
    for w in windows:
        spans = "; ".join(f"{','.join(_DAY[d] for d in r.days)} {r.start:%H:%M}-{r.end:%H:%M}" for r in w.rules)
        rows.append([w.id, w.name, spans, w.tz, w.holidays.describe() if w.holidays else "-"])
    _table("windows", ["id", "name", "when", "tz", "holidays"], rows)


@window_group.command("remove")
@click.argument("window_id")
@pass_state
def window_remove(state: CliState, window_id: str) -> None:
    """Remove a window no job uses.

    Example: rustybackup window remove office
    """
    _scheduler(state).remove_window(window_id)
    click.echo(f"removed window {window_id}")


# --- run and history ----------------------------------------------------------------------


@click.command("run")
@click.option("--once", is_flag=True, help="Run what is due now and exit (for cron or a systemd timer).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port while running (see 'rustybackup metrics').",
)
@click.option("--metrics-addr", default="127.0.0.1", show_default=True, help="Address the metrics server binds.")
@click.option(
    "--recovery-window",
    callback=parse_window,
    default=None,
    help="Recovery window for the served metrics of databases whose jobs give none.",
)
@click.option("--node", default=None, help="Run as this node of the shared catalog (needs --catalog).")
@click.option("--labels", default=None, help="This node's labels, a,b: jobs pinned to a label run only here.")
@click.option("--max-concurrent", type=click.IntRange(1, 64), default=1, show_default=True, help="Runs at once.")
@upload_limit_options
@pass_state
def run_cmd(
    state: CliState,
    once: bool,
    metrics_port: int | None,
    metrics_addr: str,
    recovery_window: timedelta | None,
    node: str | None,
    labels: str | None,
    max_concurrent: int,
    upload_limits: tuple[str, ...],
    upload_tz: str,
) -> None:
    """Run the scheduler in the foreground; Ctrl-C or SIGTERM stop after the current job.

    With --once, run what is due now and exit (for system cron or a systemd timer).

    Example: rustybackup --repo /backups run --once
    """
    if (node is not None or labels is not None) and not state.catalog:
        raise click.UsageError("--node and --labels need a shared catalog: --catalog URL or RUSTYBACKUP_CATALOG")
    from ..nodes import parse_labels

    opts: dict[str, Any] = {}
    if state.catalog:
        opts = {"node": node or socket.gethostname(), "labels": parse_labels(labels), "max_concurrent": max_concurrent}
    scheduler = _scheduler(state, real=True, upload=upload_schedule(upload_limits, upload_tz), **opts)
    stop_metrics = None
    if metrics_port is not None:
        stop_metrics = serve_metrics(
            state.require_repo(), scheduler, metrics_port, metrics_addr, recovery_window, state.catalog
        )
    started = datetime.now().astimezone()
    if once:
        made = scheduler.execute_due_jobs()
        for set_id in made:
            click.echo(set_id)
    else:
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            click.echo(f"{signal.Signals(signum).name}: stopping after the current job", err=True)
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            click.echo(f"scheduler running with {len(scheduler.list_jobs())} job(s); Ctrl-C to stop", err=True)
            scheduler.run_forever(stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    # This session's failures: finished since we started (catch-ups may be scheduled earlier).
    bad = [
        e
        for e in scheduler.history(since=started - timedelta(days=400))
        if e.finished_at is not None
        and e.finished_at >= started
        and e.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
    ]
    scheduler.close()  # delivers the queued notifications first
    if stop_metrics is not None:
        stop_metrics()
    for e in bad:
        click.echo(f"{e.job_id} {e.scheduled_for.isoformat()}: {e.status.value}: {e.error}", err=True)
    if bad:
        raise SystemExit(1)


@click.command("history")
@click.option("--job", "job_id", default=None, help="Only this job.")
@click.option("--status", type=click.Choice([s.value for s in ExecutionStatus]), default=None)
@click.option("--since", type=click.DateTime(), default=None, help="Scheduled at or after (local time).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def history_cmd(
    state: CliState, job_id: str | None, status: str | None, since: datetime | None, limit: int, as_json: bool
) -> None:
    """Show scheduled runs, newest first.

    Example: rustybackup history --job nightly --status failed --json
    """
    scheduler = _scheduler(state)
    try:
        # A naive wall time is local; astimezone() overflows at the very ends of the range.
        aware = since.astimezone() if since else None
    except (OverflowError, ValueError):
        raise click.BadParameter(f"{since} is out of range", param_hint="'--since'") from None
    rows = scheduler.history(job_id, status, aware, limit)
    if as_json:
        print_json([e.to_json() for e in rows])
        return
    _table(
        "history",
        ["job", "scheduled for", "status", "set", "duration", "error"],
        [
            [
                e.job_id,
                e.scheduled_for.isoformat(),
                e.status.value,
                e.backup_set_id or "-",
                f"{e.duration.total_seconds():.1f}s" if e.duration is not None else "-",
                e.error or "",
            ]
            for e in rows
        ],
    )


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    for command in (job_group, window_group, run_cmd, history_cmd):
        group.add_command(command)
