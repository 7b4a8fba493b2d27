"""``rustybackup metrics``: the Prometheus text format, for node_exporter's textfile
collector (``--output``, written atomically) or stdout."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from prometheus_client.core import CounterMetricFamily, Metric

from ..durations import parse_duration
from ..errors import ConfigError
from ..metrics import (
    RepositoryCollector,
    config_windows,
    last_served_port,
    render,
    serve,
    write_textfile,
)
from .context import CliState, pass_state


def parse_window(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        window = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if window <= timedelta(0):
        raise click.BadParameter(f"{value!r}: must be positive")
    return window


def collector_for(
    repo: Path, default_window: timedelta | None, extra: Any = None, catalog: str | None = None
) -> RepositoryCollector:
    """The repository's collector; the windows are re-read from the jobs at each scrape.
    With `catalog` (a shared catalog's URL) sets, verifications and jobs come from it."""
    if not repo.is_dir():
        raise ConfigError(f"{repo}: no such repository directory (run 'rustybackup init' first)")
    return RepositoryCollector(
        repo, lambda: config_windows(repo, catalog), default_window=default_window, extra=extra, catalog=catalog
    )


def serve_metrics(
    repo: Path, scheduler: Any, port: int, addr: str, default_window: timedelta | None, catalog: str | None = None
) -> Callable[[], None]:
    """Serves the repository's metrics plus the scheduler's notification counters;
    returns the function that stops the server."""

    def counters() -> Iterable[Metric]:
        family = CounterMetricFamily(
            "rustybackup_notifications",
            "Notification deliveries by outcome since the scheduler started.",
            labels=["outcome"],
        )
        for outcome, n in scheduler.events.counters().items():
            family.add_metric([outcome], n)
        yield family

    try:
        stop = serve(collector_for(repo, default_window, counters, catalog), port, addr)
    except OSError as exc:
        raise ConfigError(f"--metrics-port {port} on {addr}: {exc.strerror or exc}") from None
    click.echo(f"serving metrics on http://{addr}:{last_served_port()}/metrics", err=True)
    return stop


@click.command("metrics")
@click.option(
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file atomically (e.g. /var/lib/node_exporter/rustybackup.prom); default stdout.",
)
@click.option(
    "--recovery-window",
    callback=parse_window,
    default=None,
    help="Recovery window (e.g. 7d) for databases whose jobs' retention gives none.",
)
@pass_state
def metrics_cmd(state: CliState, output: Path | None, recovery_window: timedelta | None) -> None:
    """Print per-database metrics in the Prometheus text format.

    Example: rustybackup --repo /backups metrics --output /var/lib/node_exporter/rustybackup.prom
    """
    collector = collector_for(state.require_repo(), recovery_window, catalog=state.catalog)
    if output is None:
        sys.stdout.buffer.write(render(collector))
        sys.stdout.flush()
    else:
        write_textfile(output, collector)


def register(group: click.Group) -> None:
    group.add_command(metrics_cmd)
