"""``archive-push`` and ``archive-get``: PostgreSQL's archive_command and
restore_command for a ``postgresql`` database.

    archive_command = 'rustybackup --repo /backups archive-push main %p'
    restore_command = 'rustybackup --repo /backups archive-get main %f %p'

On a remote repository (``--repo s3://bucket/prefix``) each push is uploaded before it
exits 0 (postgres/archive_remote.py).

Exit codes are what PostgreSQL reads: 0 archived (or already archived identically) /
restored; 1 refused, failed, or (archive-get) no such file, which is how recovery learns
it reached the end of the archive, so that case prints nothing.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..engine import BackupManager
from .context import CliState, closed_at_end, pass_state


def _manager(state: CliState) -> BackupManager:
    if state.url is not None:
        # Never created here: a typo in archive_command must not start a new repository.
        return closed_at_end(BackupManager(str(state.url), create=False))
    repo = state.require_repo()
    if not (repo / "format").exists():
        raise click.ClickException(f"no repository at {repo}; run `rustybackup --repo {repo} init` first")
    return closed_at_end(BackupManager(repo))


@click.command("archive-push")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@pass_state
def archive_push(state: CliState, name: str, path: Path) -> None:
    """Archive WAL file PATH of postgresql database NAME (archive_command, with %p).

    Durable in the repository before it exits 0; the same file again is a success, other
    content under an archived name is refused (exit 1).

    Example: archive_command = 'rustybackup --repo /backups archive-push main %p'
    """
    from ..postgres import archive, archive_remote

    manager = _manager(state)
    if manager.remote is not None:
        archive_remote.push(manager, name, path)
    else:
        archive.push(manager, name, path)


@click.command("archive-get")
@click.argument("name")
@click.argument("wal_name", metavar="WALNAME")
@click.argument("dest", type=click.Path(path_type=Path, dir_okay=False))
@pass_state
def archive_get(state: CliState, name: str, wal_name: str, dest: Path) -> None:
    """Write archived WAL file WALNAME of database NAME to DEST (restore_command, with
    %f %p). Exits 1 without a message when the archive has no such file.

    Example: restore_command = 'rustybackup --repo /backups archive-get main %f %p'
    """
    from ..postgres import archive, archive_remote

    manager = _manager(state)
    try:
        if manager.remote is not None:
            archive_remote.get(manager, name, wal_name, dest)
        else:
            archive.get(manager, name, wal_name, dest)
    except archive.NotArchived:
        raise SystemExit(1) from None


def register(group: click.Group) -> None:
    """Adds ``archive-push`` and ``archive-get`` to the top-level group."""
    group.add_command(archive_push)
    group.add_command(archive_get)
