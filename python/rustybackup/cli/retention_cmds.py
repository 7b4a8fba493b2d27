"""``rustybackup retention NAME``: show (and with ``--apply``, carry out) a retention plan.

Rules given together combine: a set stays if any rule keeps it. The plan comes from
``manager.retention_plan`` (sets being read are kept) and ``--apply`` hands that very
plan to ``manager.apply_retention``, so the table shows exactly what is deleted. Rows
are printed as they come, so 50,000 sets list in flat memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from ..retention import RetentionDecision, RetentionPolicy, parse_duration
from .context import CliState, pass_state

_PERIODS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


class _Manager(Protocol):
    """What this command needs from ``BackupManager``."""

    def retention_plan(self, database: str, policy: RetentionPolicy) -> list[RetentionDecision]: ...

    def apply_retention(
        self,
        database: str,
        policy: RetentionPolicy,
        dry_run: bool = True,
        *,
        plan: Sequence[RetentionDecision] | None = None,
    ) -> list[str]: ...


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
    from .context import closed_at_end

    return closed_at_end(BackupManager(repo))


def render(name: str, policy: RetentionPolicy, decisions: list[RetentionDecision], deleted: list[str] | None) -> None:
    """The plan as plain aligned rows (set id, decision, reason; ids whole at any width),
    written as they go, and a one-line summary."""
    out = click.get_text_stream("stdout")
    out.write(f"retention of {name}: {policy.describe()}\n")
    width = max((len(d.set_id) for d in decisions), default=3)
    out.write(f"{'set'.ljust(width)}  decision  reason\n")
    for d in decisions:
        out.write(f"{d.set_id.ljust(width)}  {'keep' if d.keep else 'delete':<8}  {d.reason}\n")
    keep = sum(d.keep for d in decisions)
    drop = len(decisions) - keep
    if deleted is None:
        out.write(f"{keep} kept, {drop} to delete (dry run: pass --apply to delete them)\n")
        return
    out.write(f"{keep} kept, {len(deleted)} deleted\n")
    refused = drop - len(deleted)
    if refused:
        done = set(deleted)
        names = ", ".join(d.set_id for d in decisions if not d.keep and d.set_id not in done)
        out.write(f"{refused} planned deletion(s) kept after all (being read, or the catalog changed): {names}\n")


@click.command("retention")
@click.argument("name")
@click.option("--redundancy", type=click.IntRange(min=1), help="Keep the N newest FULL chains.")
@click.option("--window", type=DurationType(), help="Keep every instant of this window recoverable (7d, 12h, 30m).")
@click.option("--keep-last", type=click.IntRange(min=0), default=0, help="Keep the N newest backups.")
@click.option(
    "--keep-hourly", type=click.IntRange(min=0), default=0, help="Newest backup of the N latest hours that have one."
)
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
    counts = dict(
        zip(_PERIODS, (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly), strict=True)
    )
    policy = build_policy(redundancy, window, counts)
    where = state.require_location()
    manager = open_manager(where if isinstance(where, Path) else str(where))
    decisions: list[RetentionDecision] = list(manager.retention_plan(name, policy))
    deleted = manager.apply_retention(name, policy, dry_run=False, plan=decisions) if apply_plan else None
    if as_json:
        write_json(name, policy, apply_plan, decisions, deleted)
    else:
        render(name, policy, decisions, deleted)


def write_json(
    name: str, policy: RetentionPolicy, applied: bool, decisions: list[RetentionDecision], deleted: list[str] | None
) -> None:
    """One JSON document, a decision a line, written as it goes (an indented dump of
    50,000 decisions is most of the command's time)."""
    out = click.get_text_stream("stdout")
    head = {"database": name, "policy": policy.to_dict(), "applied": applied}
    out.write(json.dumps(head)[:-1] + ', "decisions": [')
    sep = "\n"
    for d in decisions:
        out.write(sep + json.dumps({"set_id": d.set_id, "keep": d.keep, "reason": d.reason}))
        sep = ",\n"
    gone = deleted if deleted is not None else [d.set_id for d in decisions if not d.keep]
    out.write('\n], "deleted": ' + json.dumps(gone) + "}\n")


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    group.add_command(retention)
