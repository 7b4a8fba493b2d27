"""``rustybackup verify``: check a set (and its chain), a database or everything, at
QUICK / STANDARD / FULL / RESTORE-TEST depth, with a progress bar and a table of findings.
Exit codes: 0 everything verified is good, 1 corruption or missing data found, 2 usage."""

from __future__ import annotations

import re
from datetime import timedelta

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from ..errors import VerificationError
from ..verify import Verifier, VerifyProgress
from ..verify_report import VerificationReport
from .context import CliState, pass_state, print_json, print_table

_LEVELS = {"quick": "quick", "standard": "standard", "full": "full", "restore-test": "restore_test"}
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_BUDGET = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_budget(text: str) -> timedelta:
    """'90s', '10m', '1.5h', '2d' -> timedelta; a usage error names the value otherwise."""
    total = timedelta(0)
    for part in text.strip().split():
        m = _BUDGET.match(part)
        if m is None:
            raise click.BadParameter(f"{text!r} is not a duration like 90s, 10m, 1h or 2d", param_hint="--budget")
        total += timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    if total <= timedelta(0):
        raise click.BadParameter(f"{text!r} must be longer than zero", param_hint="--budget")
    return total


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _print(report: VerificationReport, console: Console) -> None:
    if report.findings or report.corrupt_blocks:
        table = Table(title="findings")
        for col in ("set", "kind", "subject", "detail"):
            table.add_column(col)
        for f in report.findings:
            table.add_row(f.set_id, f.kind, f.subject, f.message)
        print_table(table, prose=("subject", "detail"), console=console)
    if report.corrupt_blocks:
        blocks = Table(title="corrupt blocks")
        for col in ("set", "piece", "file", "block", "offset", "expected", "actual"):
            blocks.add_column(col)
        for b in report.corrupt_blocks:
            blocks.add_row(b.set_id, b.piece, b.file, str(b.block_index), str(b.offset), b.expected[:16], b.actual[:16])
        print_table(blocks, console=console)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
    verdict = "OK" if report.ok else "PROBLEMS FOUND"
    console.print(
        f"{verdict}: {report.level.value} verification of {len(report.sets)} set(s), "
        f"{report.pieces_checked} checked ({counts}), {_size(report.bytes_read)} read in "
        f"{report.duration.total_seconds():.2f}s ({_size(report.throughput)}/s)"
    )
    for sid, status in report.marked.items():
        console.print(f"set {sid} marked {status}")
    if not report.complete:
        console.print("the budget ran out: run again to cover the rest (oldest-verified first)")


@click.command("verify")
@click.argument("name", required=False)
@click.option("--set", "set_id", default=None, help="Verify this backup set and its chain.")
@click.option("--all", "all_", is_flag=True, help="Verify every set of the repository.")
@click.option(
    "--level",
    type=click.Choice(list(_LEVELS)),
    default="standard",
    show_default=True,
    help="quick: exists+size; standard: checksums; full: every block; restore-test: restore and compare.",
)
@click.option("--budget", default=None, help="Stop inside this much time (90s, 10m, 1h), oldest-verified first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON report on stdout.")
@click.option(
    "--pg-sql",
    default=None,
    help="restore-test of postgresql sets: SQL that must succeed (first value not false/NULL).",
)
@pass_state
def verify_cmd(
    state: CliState,
    name: str | None,
    set_id: str | None,
    all_: bool,
    level: str,
    budget: str | None,
    as_json: bool,
    pg_sql: str | None,
) -> None:
    """Verify backups: NAME (a database), --set ID, or --all.

    Example: rustybackup verify orders --level full --budget 10m
    """
    chosen = [x for x in (name, set_id, "all" if all_ else None) if x is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of NAME, --set ID or --all")
    limit = parse_budget(budget) if budget is not None else None
    verifier = Verifier(state.open_manager())
    verifier.pg_check_sql = pg_sql
    target = None if all_ else (set_id or name)
    console = Console(stderr=True)
    columns = (
        TextColumn(f"verify ({level})"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("verify", total=None)

        def on_progress(p: VerifyProgress) -> None:
            bar.update(task, completed=p.bytes_read, total=p.bytes_total or None)

        try:
            report = verifier.verify(target, _LEVELS[level], budget=limit, progress=on_progress)
        except VerificationError as exc:
            # A target that names nothing is the caller's mistake: usage, exit 2.
            raise click.UsageError(str(exc)) from None
    if as_json:
        print_json(report.to_json())
    else:
        _print(report, Console())
    if not report.ok:
        raise click.exceptions.Exit(1)


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    group.add_command(verify_cmd)
