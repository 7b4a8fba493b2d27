"""``rustybackup copy``: sets from one repository to another (directories or s3:// URLs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..copy import copy_sets
from ..copy_reencrypt import SourceCredentials
from ..errors import ConfigError
from ..repo_url import RepoUrl, parse_repository
from .context import CliState, closed_at_end, pass_state, print_json
from .remote_opts import upload_limit_options, upload_schedule

if TYPE_CHECKING:
    from ..engine import BackupManager


def _open(value: str, what: str, *, create: bool) -> BackupManager:
    from ..engine import BackupManager

    try:
        where = parse_repository(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None
    if isinstance(where, RepoUrl):
        return closed_at_end(BackupManager(str(where), create=create))
    if not create and not (where / "format").exists():
        raise click.ClickException(f"{what}: no repository at {where}")
    return closed_at_end(BackupManager(where))


@click.command("copy")
@click.option("--from", "source", default=None, metavar="REPO", help="Source repository (default: --repo).")
@click.option("--to", "target", required=True, metavar="REPO", help="Target repository (created when new).")
@click.option("--database", default=None, help="Only the sets of this database.")
@click.option(
    "--set", "set_ids", multiple=True, metavar="ID", help="Only this set (repeatable; its chain must be there)."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was copied as JSON.")
@click.option(
    "--from-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Passphrase of an encrypted source under other keys than the target "
    "(default: --password-file / RUSTYBACKUP_PASSWORD, which then opens both).",
)
@click.option(
    "--from-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Key file of an encrypted source under other keys than the target.",
)
@click.option(
    "--decrypt",
    is_flag=True,
    help="Copy an encrypted source into a plain target, decrypted (the target then holds plaintext).",
)
@upload_limit_options
@pass_state
def copy_cmd(
    state: CliState,
    source: str | None,
    target: str,
    database: str | None,
    set_ids: tuple[str, ...],
    as_json: bool,
    from_password_file: Path | None,
    from_key_file: Path | None,
    decrypt: bool,
    upload_limits: tuple[str, ...],
    upload_tz: str,
) -> None:
    """Copy backup sets to another repository, checking every block on the way.

    Parents go first; sets the target has are skipped, so an interrupted copy is
    simply run again. Exit code 1 when a set could not be copied. A target under other
    keys (or a plain source into an encrypted target) gets each set re-encrypted into
    its keys; the target's key comes from --password-file/--key-file (a write-only key
    is enough), the source's from --from-password-file/--from-key-file. An encrypted
    source goes into a plain target only with --decrypt.

    Example: rustybackup --password-file b.txt copy --from /backups --from-password-file a.txt --to s3://offsite/backups
    """
    schedule = upload_schedule(upload_limits, upload_tz)
    if source is None:
        where = state.url if state.url is not None else state.repo
        if where is None:
            raise click.UsageError("no source: pass --from REPO (or --repo)")
        source = str(where)
    src = _open(source, "--from", create=False)
    dst = _open(target, "--to", create=True)
    dst.upload_limits = schedule
    creds = SourceCredentials(password_file=from_password_file, key_file=from_key_file)
    report = copy_sets(src, dst, database, set_ids=set_ids or None, decrypt=decrypt, source_credentials=creds)
    if as_json:
        print_json(report.as_json())
    else:
        click.echo(
            f"copied {len(report.copied)} set(s) ({report.bytes_copied} bytes), "
            f"{len(report.skipped)} already there, {len(report.failed)} failed"
        )
        for sid, why in report.failed.items():
            click.echo(f"failed {sid}: {why}", err=True)
    if not report.ok:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    group.add_command(copy_cmd)
