"""``rustybackup demo``: the whole job end to end, in a temporary directory."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Work in this (new or empty) directory instead of a temporary one; it is kept.",
)
@click.option("--postgresql", is_flag=True, help="Run the PostgreSQL demo instead (needs PostgreSQL and psycopg).")
def demo(directory: Path | None, postgresql: bool) -> None:
    """Back up a live SQLite database (FULL, INCREMENTAL, DIFFERENTIAL, ARCHIVE_LOG),
    verify it block by block, catch a flipped bit, restore to a point in time and show
    the scheduler's next week. Exits 0 when every step holds, 1 when one does not.

    Example: rustybackup demo --dir /tmp/rb-demo
    """
    from ..demo import DemoFailure, run_demo

    console = Console()
    t0 = time.monotonic()
    if postgresql:
        from ..demo_postgresql import run_postgresql_demo

        try:
            pg = run_postgresql_demo(directory, console)
        except DemoFailure as exc:
            click.echo(f"error: demo failed: {exc}", err=True)
            raise SystemExit(1) from None
        console.print(f"done in {time.monotonic() - t0:.1f} s; everything is in {pg.directory}")
        return
    try:
        result = run_demo(directory, console)
    except DemoFailure as exc:
        click.echo(f"error: demo failed: {exc}", err=True)
        raise SystemExit(1) from None
    console.print(f"done in {time.monotonic() - t0:.1f} s; everything is in {result.directory}")


def register(group: click.Group) -> None:
    """Adds ``demo`` to the top-level group."""
    group.add_command(demo)
