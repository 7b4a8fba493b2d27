"""``rustybackup retention NAME``: show (and with ``--apply``, carry out) a retention plan.

Rules given together combine: a set stays if any rule keeps it. The plan comes from
``BackupManager(repo).catalog.retention_plan`` and deletion from
``manager.apply_retention``; both are dry-run-safe (the catalog row goes before the files).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import click
from rich.console import Console
from rich.table import Table

from ..retention import RetentionDecision, RetentionPolicy, parse_duration
from .context import CliState, pass_state, print_json

_PERIODS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


class _Manager(Protocol):
    """What this command needs from ``BackupManager``."""

    @property
    def catalog(self) -> Any: ...

    def apply_retention(self, database: str, policy: RetentionPolicy, dry_run: bool = True) -> list[str]: ...


if TYPE_CHECKING:
    _ParamType = click.ParamType[timedelta]
else:  # click < 8.2 has no runtime generic ParamType
    _ParamType = click.ParamType


class DurationType(_ParamType):
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w``, ``1d12h``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def build_policy(redundancy: int | None, window: timedelta | None, counts: dict[str, int]) -> RetentionPolicy:
    """The union of the rules given on the command line; a usage error when none is."""
    parts: list[RetentionPolicy] = []
    try:
        if redundancy is not None:
            parts.append(RetentionPolicy.redundancy(redundancy))
        if window is not None:
            parts.append(RetentionPolicy.recovery_window(window))
        if any(counts.values()):
            parts.append(RetentionPolicy.keep(**counts))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if not parts:
        raise click.UsageError("give a rule: --redundancy N, --window 7d, or --keep-daily 7 (--keep-weekly 4 ...)")
    return RetentionPolicy.combine(*parts)


def open_manager(repo: Any) -> _Manager:
    """The repository's ``BackupManager`` (a seam the CLI tests replace)."""
    from ..engine import BackupManager

    return BackupManager(repo)


def render(name: str, policy: RetentionPolicy, decisions: list[RetentionDecision], deleted: list[str] | None) -> None:
    """The plan as a table with reasons, and a one-line summary."""
    console = Console()
    table = Table(title=f"retention of {name}: {policy.describe()}")
    table.add_column("set")
    table.add_column("decision")
    table.add_column("reason")
    for d in decisions:
        table.add_row(d.set_id, "[green]keep[/green]" if d.keep else "[red]delete[/red]", d.reason)
    console.print(table)
    keep = sum(d.keep for d in decisions)
    drop = len(decisions) - keep
    if deleted is None:
        console.print(f"{keep} kept, {drop} to delete (dry run: pass --apply to delete them)")
    else:
        console.print(f"{keep} kept, {len(deleted)} deleted")


@click.command("retention")
@click.argument("name")
@click.option("--redundancy", type=click.IntRange(min=1), help="Keep the N newest FULL chains.")
@click.option("--window", type=DurationType(), help="Keep every instant of this window recoverable (7d, 12h, 30m).")
@click.option("--keep-last", type=click.IntRange(min=0), default=0, help="Keep the N newest backups.")
@click.option("--keep-hourly", type=click.IntRange(min=0), default=0, help="Newest backup of the N latest hours that have one.")
@click.option("--keep-daily", type=click.IntRange(min=0), default=0, help="... of the N latest days that have one.")
@click.option("--keep-weekly", type=click.IntRange(min=0), default=0, help="... of the N latest ISO weeks.")
@click.option("--keep-monthly", type=click.IntRange(min=0), default=0, help="... of the N latest months.")
@click.option("--keep-yearly", type=click.IntRange(min=0), default=0, help="... of the N latest years.")
@click.option("--apply", "apply_plan", is_flag=True, help="Delete what the plan drops (default: show it only).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@pass_state
def retention(
    state: CliState,
    name: str,
    redundancy: int | None,
    window: timedelta | None,
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    apply_plan: bool,
    as_json: bool,
) -> None:
    """Show which backup sets of NAME a policy keeps and why; --apply deletes the rest.

    Rules combine: a set stays if any keeps it. --window 7d keeps every instant of the
    last 7 days recoverable, which keeps the newest FULL before them and everything since;
    it does not delete "whatever is older than 7 days".

    Example: rustybackup retention orders --window 7d --keep-weekly 4 --keep-monthly 12
    """
    counts = dict(zip(_PERIODS, (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly)))
    policy = build_policy(redundancy, window, counts)
    manager = open_manager(state.require_repo())
    decisions: list[RetentionDecision] = list(manager.catalog.retention_plan(name, policy))
    deleted = manager.apply_retention(name, policy, dry_run=False) if apply_plan else None
    if as_json:
        print_json(
            {
                "database": name,
                "policy": policy.to_dict(),
                "applied": apply_plan,
                "decisions": [{"set_id": d.set_id, "keep": d.keep, "reason": d.reason} for d in decisions],
                "deleted": deleted if deleted is not None else [d.set_id for d in decisions if not d.keep],
            }
        )
    else:
        render(name, policy, decisions, deleted)


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    group.add_command(retention)
