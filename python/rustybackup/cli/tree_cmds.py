"""``rustybackup ls``, ``diff`` and ``dump``: looking into a files set without restoring
it, and the report a restore prints of what it could not give back."""

from __future__ import annotations

import stat
import sys

import click

from ..manifest import Manifest, Owner
from ..restore import RestoreReport
from ..tree_view import TreeEntry, diff_entries, dump_file, entries
from .context import CliState, pass_state, print_json

# How many lines of a long "not restored" report the CLI prints before a count.
_REPORT_LINES = 20


def echo_report(report: RestoreReport, *, delta: bool) -> None:
    """Prints what a restore kept, removed and could not restore (stderr for the last),
    so nothing a restore dropped goes unsaid."""
    if delta:
        click.echo(
            f"{report.files_written} files written, {report.files_unchanged} already matched, "
            f"{len(report.removed)} entries removed"
        )
    problems = report.not_restored
    if not problems:
        return
    click.echo(f"{len(problems)} items could not be restored as backed up:", err=True)
    for p in problems[:_REPORT_LINES]:
        click.echo(f"  {p.path}: {p.what} {p.reason}", err=True)
    if len(problems) > _REPORT_LINES:
        kinds: dict[str, int] = {}
        for p in problems[_REPORT_LINES:]:
            kinds[p.what] = kinds.get(p.what, 0) + 1
        rest = ", ".join(f"{n} {what}" for what, n in sorted(kinds.items()))
        click.echo(f"  ... and {len(problems) - _REPORT_LINES} more ({rest})", err=True)


def _owner(o: Owner | None) -> str:
    if o is None:
        return "-"
    return f"{o.user or o.uid}:{o.group or o.gid}"


def _mode(e: TreeEntry) -> str:
    return stat.filemode(e.type_bits | e.mode)


@click.command("ls")
@click.argument("set_id")
@click.argument("path", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def ls_cmd(state: CliState, set_id: str, path: str, as_json: bool) -> None:
    """List the entries of set SET_ID, or those at and below PATH.

    Example: rustybackup ls 20260301T023000000000Z-1a2b3c4d etc/nginx --json
    """
    shown = entries(_manifest(state, set_id), path.strip("/"))
    if as_json:
        print_json([e.to_json() for e in shown])
        return
    for e in shown:
        extra = f" -> {e.target}" if e.target is not None else ""
        click.echo(f"{_mode(e)} {_owner(e.owner):>17} {e.size:>12} {e.path}{extra}")


@click.command("diff")
@click.argument("set1")
@click.argument("set2")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def diff_cmd(state: CliState, set1: str, set2: str, as_json: bool) -> None:
    """What changed from set SET1 to set SET2: added, removed and changed entries, with sizes.

    Example: rustybackup diff 20260301T...-1a2b3c4d 20260302T...-5e6f7a8b
    """
    d = diff_entries(_manifest(state, set1), _manifest(state, set2))
    if as_json:
        print_json(d.to_json())
        return
    for e in d.added:
        click.echo(f"+ {e.path} ({e.size} bytes)")
    for e in d.removed:
        click.echo(f"- {e.path} ({e.size} bytes)")
    for old, new, what in d.changed:
        click.echo(f"M {new.path} ({old.size} -> {new.size} bytes; {', '.join(what)})")
    click.echo(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")


@click.command("dump")
@click.argument("set_id")
@click.argument("path")
@pass_state
def dump_cmd(state: CliState, set_id: str, path: str) -> None:
    """Write the contents of file PATH of set SET_ID to standard output, streamed.

    Example: rustybackup dump 20260301T023000000000Z-1a2b3c4d etc/hosts > hosts
    """
    manager = state.open_manager()
    with manager.reading([set_id]):
        m = manager.set_manifest(set_id)
        sys.stdout.flush()
        dump_file(manager.repository, m, path.strip("/"), sys.stdout.fileno())


def _manifest(state: CliState, set_id: str) -> Manifest:
    manager = state.open_manager()
    with manager.reading([set_id]):
        return manager.set_manifest(set_id)


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    for cmd in (ls_cmd, diff_cmd, dump_cmd):
        group.add_command(cmd)
