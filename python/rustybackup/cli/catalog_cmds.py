"""``rustybackup catalog import|export``: move a repository's catalog between its
``catalog.db`` and the shared catalog (``--catalog`` or ``RUSTYBACKUP_CATALOG``). Both
directions are idempotent and checked row by row before they commit (catalog_move.py)."""

from __future__ import annotations

import click

from .context import CliState, pass_state, print_json


def _need_catalog(state: CliState) -> str:
    if not state.catalog:
        raise click.UsageError("no shared catalog: pass --catalog URL or set RUSTYBACKUP_CATALOG")
    return state.catalog


def _show(report: object, as_json: bool) -> None:
    from ..catalog_move import MoveReport

    assert isinstance(report, MoveReport)
    if as_json:
        print_json(report.to_json())
        return
    click.echo(f"{report.source} -> {report.target}")
    for table, count in report.tables.items():
        click.echo(f"  {table}: {count} row(s), all found in the target")
    click.echo(f"  jobs: {report.jobs}")


@click.group("catalog")
def catalog_group() -> None:
    """Move a repository's catalog between catalog.db and a shared PostgreSQL catalog.

    Example: rustybackup --repo /backups --catalog postgresql://backup@db/catalog catalog import
    """


@catalog_group.command("import")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def import_cmd(state: CliState, as_json: bool) -> None:
    """Copy the repository's catalog.db (and jobs) into the shared catalog.

    Example: rustybackup --repo /backups --catalog postgresql://backup@db/catalog catalog import --json
    """
    from ..catalog_move import import_to_shared

    _show(import_to_shared(state.require_repo(), _need_catalog(state)), as_json)


@catalog_group.command("export")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def export_cmd(state: CliState, as_json: bool) -> None:
    """Copy the repository's rows (and jobs) from the shared catalog into its catalog.db.

    Example: rustybackup --repo /backups --catalog postgresql://backup@db/catalog catalog export --json
    """
    from ..catalog_move import export_from_shared

    _show(export_from_shared(state.require_repo(), _need_catalog(state)), as_json)


@catalog_group.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def report_cmd(state: CliState, as_json: bool) -> None:
    """Counts and sizes of every repository registered in the shared catalog.

    Example: rustybackup --catalog postgresql://backup@db/catalog catalog report --json
    """
    from ..catalog_shared import SharedCatalog

    shared = SharedCatalog(_need_catalog(state))
    try:
        rep = shared.report()
    finally:
        shared.close()
    if as_json:
        print_json(rep)
        return
    for location, r in rep["repositories"].items():
        click.echo(f"{location} (host {r['host']}): {r['total_sets']} set(s), {r['total_size']} bytes")
        for name, d in r["databases"].items():
            click.echo(f"  {name}: {d['sets']} set(s), newest {d['newest'] or '-'}")
    click.echo(f"total: {rep['total_sets']} set(s), {rep['total_size']} bytes")


@catalog_group.command("recovery-path")
@click.argument("database")
@click.option("--until", default=None, help="ISO 8601 instant with an offset (default: the newest state).")
@click.option("--repository", default=None, help="The repository, when several hold DATABASE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def recovery_path_cmd(state: CliState, database: str, until: str | None, repository: str | None, as_json: bool) -> None:
    """The sets a restore of DATABASE would read, in whichever repository holds it.

    Example: rustybackup --catalog postgresql://backup@db/catalog catalog recovery-path orders --json
    """
    from datetime import datetime

    from ..catalog import set_json
    from ..catalog_shared import SharedCatalog

    moment = None
    if until is not None:
        try:
            moment = datetime.fromisoformat(until)
        except ValueError:
            raise click.BadParameter(f"{until!r} is not an ISO 8601 instant", param_hint="--until") from None
        if moment.tzinfo is None:
            raise click.BadParameter(f"{until!r} has no offset", param_hint="--until")
    shared = SharedCatalog(_need_catalog(state))
    try:
        path = shared.find_recovery_path(database, moment, repository=repository)
    finally:
        shared.close()
    if as_json:
        print_json([set_json(s) for s in path])
        return
    for s in path:
        click.echo(f"{s.id} {s.backup_type.value} {s.finished_at.isoformat()}")


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    group.add_command(catalog_group)
