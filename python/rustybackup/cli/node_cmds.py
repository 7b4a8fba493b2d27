"""``rustybackup nodes``: the scheduler nodes of a shared catalog (``--catalog`` or
``RUSTYBACKUP_CATALOG``): which are live, their leases, what each runs, their last
heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from .context import CliState, pass_state, print_json, print_table


@click.command("nodes")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def nodes_cmd(state: CliState, as_json: bool) -> None:
    """List the scheduler nodes of the shared catalog, live ones first.

    Example: rustybackup --catalog postgresql://backup@db/catalog nodes --json
    """
    if not state.catalog:
        raise click.UsageError("no shared catalog: pass --catalog URL or set RUSTYBACKUP_CATALOG")
    from ..nodes import list_nodes

    nodes = list_nodes(state.catalog, datetime.now(UTC))
    if as_json:
        print_json([n.to_json() for n in nodes])
        return
    from rich.table import Table

    table = Table(title="nodes")
    for col in ("node", "live", "host", "pid", "labels", "heartbeat", "lease until", "running"):
        table.add_column(col)
    for n in nodes:
        running = ", ".join(f"{r['job_id']}@{r['scheduled_for']}" for r in n.running) or "-"
        table.add_row(
            n.name,
            "yes" if n.live else "no",
            n.host,
            str(n.pid),
            ",".join(n.labels) or "-",
            n.heartbeat_at.isoformat(timespec="seconds"),
            n.lease_until.isoformat(timespec="seconds"),
            running,
        )
    print_table(table, prose=("running",))


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    group.add_command(nodes_cmd)
