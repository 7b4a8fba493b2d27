"""``rustybackup capture``: continuous WAL capture of a live SQLite database."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from .context import CliState, closed_at_end, pass_state


@click.command("capture")
@click.argument("name")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=10.0,
    show_default=True,
    help="Seconds between capture steps (the point-in-time granularity).",
)
@click.option("--once", is_flag=True, help="Run one capture step and exit.")
@pass_state
def capture(state: CliState, name: str, interval: float, once: bool) -> None:
    """Capture the WAL of sqlite database NAME continuously into ARCHIVE_LOG sets, so it
    can be restored to any instant (--until). Runs in the foreground; SIGTERM or Ctrl-C
    stops it after the current step (exit 0).

    Example: rustybackup --repo /backups capture shop --interval 5
    """
    from ..capture_loop import Capturer
    from ..engine import BackupManager

    where = state.require_location()
    # A remote repository: each step's set is uploaded before the next step starts; the
    # repository is never created here (a typo must not start an empty one).
    manager = closed_at_end(
        BackupManager(where) if isinstance(where, Path) else BackupManager(str(where), create=False)
    )
    capturer = Capturer(manager, name, interval)
    if once:
        s = capturer.step()
        click.echo("nothing new in the WAL" if s is None else f"captured into set {s.id}")
        return
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        click.echo(f"capturing the WAL of {name!r} every {interval:g} s; SIGTERM or Ctrl-C stops")
        n = capturer.run(stop, on_set=lambda s: click.echo(f"captured into set {s.id}"))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"stopped after {n} capture set(s)")


def register(group: click.Group) -> None:
    """Adds ``capture`` to the top-level group."""
    group.add_command(capture)
