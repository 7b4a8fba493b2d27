"""The ``rustybackup`` command line.

Conventions every subcommand keeps: ``--json`` on listings, exit codes scripts can trust
(0 ok, 1 a problem found, 2 usage or invalid input), errors as one line without a
traceback unless ``--debug``, ``--repo`` or ``RUSTYBACKUP_REPO`` for the repository.
Each area's commands live in their own module and register themselves on the group,
which imports that module only when one of its commands is asked for (``COMMANDS``).
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .. import gcpause
from ..errors import ConfigError, RustyBackupError
from .context import CliState

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


# Command name -> the module under cli/ whose `register` adds it. A command's module is
# imported only when that command runs (or --help lists it): archive_command starts one
# process per WAL segment, which must not import rich, the scheduler or the metrics.
# tests/test_cli_startup.py checks this table against what the modules register.
COMMANDS: dict[str, str] = {
    "archive-get": "pg_cmds",
    "archive-push": "pg_cmds",
    "backup": "backup_cmds",
    "capture": "capture_cmds",
    "catalog": "catalog_cmds",
    "copy": "copy_cmds",
    "cron": "cron_cmds",
    "db": "backup_cmds",
    "demo": "demo_cmds",
    "diff": "tree_cmds",
    "dump": "tree_cmds",
    "hash": "hash_cmds",
    "history": "schedule_cmds",
    "init": "backup_cmds",
    "job": "schedule_cmds",
    "key": "key_cmds",
    "list": "backup_cmds",
    "ls": "tree_cmds",
    "metrics": "metrics_cmds",
    "nodes": "node_cmds",
    "plan": "plan_cmds",
    "report": "backup_cmds",
    "restore": "backup_cmds",
    "retention": "retention_cmds",
    "run": "schedule_cmds",
    "verify": "verify_cmds",
    "window": "schedule_cmds",
}


class _Group(click.Group):
    """Loads each command's module on first use, and turns library errors into one line
    on stderr with a trustworthy exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            # Importing a command's modules (backup: engine, catalog, manifest and their
            # ~40 dataclasses) allocates without making garbage cycles; the collector
            # ran ~45 times during it, ~6-13 ms of every such command's start
            # (benches/README.md, issue 17). Only the import is paused, not the command.
            with gcpause.paused():
                module = importlib.import_module(f".{COMMANDS[cmd_name]}", __name__)
                module.register(self)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except (RustyBackupError, OSError, ValueError) as exc:
            state = ctx.find_object(CliState)
            if state is not None and state.debug:
                raise
            click.echo(f"error: {exc}", err=True)
            # ConfigError is a bad name, kind or setting on the command line: invalid input.
            code = EXIT_USAGE if isinstance(exc, ValueError | ConfigError) else EXIT_PROBLEM
            ctx.exit(code)
        except Exception as exc:
            # A bug, not a user error: still one line (scripts parse stderr), and the way to the traceback.
            state = ctx.find_object(CliState)
            if state is not None and state.debug:
                raise
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True
            )
            ctx.exit(EXIT_PROBLEM)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    # Not click.Path: it would turn s3://bucket/prefix into the local path s3:/bucket/prefix.
    type=str,
    envvar="RUSTYBACKUP_REPO",
    default=None,
    help="Repository directory or s3://bucket/prefix (or set RUSTYBACKUP_REPO).",
)
@click.option(
    "--catalog",
    envvar="RUSTYBACKUP_CATALOG",
    default=None,
    help="A shared catalog, postgresql://... (or set RUSTYBACKUP_CATALOG); default: the repository's catalog.db.",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Passphrase of an encrypted repository (else RUSTYBACKUP_PASSWORD).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Key file (or write-only key) of an encrypted repository (else RUSTYBACKUP_KEY_FILE).",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="rustybackup")
@click.pass_context
def cli(
    ctx: click.Context,
    repo: str | None,
    catalog: str | None,
    password_file: Path | None,
    key_file: Path | None,
    verbose: int,
    debug: bool,
) -> None:
    """rustybackup: schedule, perform, catalog, retain and verify backups.

    Example: rustybackup --repo /backups init
    """
    if password_file is not None or key_file is not None:
        from ..keys import use_credentials

        # Read once here; an encrypted repository opened by any command then uses them.
        use_credentials(password_file=password_file, key_file=key_file)
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from ..repo_url import RepoUrl, parse_repository

    try:
        where = None if repo is None or repo == "" else parse_repository(repo)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--repo") from None
    if isinstance(where, RepoUrl):
        ctx.obj = CliState(repo=None, debug=debug, url=where)
    else:
        ctx.obj = CliState(repo=where, debug=debug)
    if catalog:
        from ..catalog_db import is_shared_url

        if not is_shared_url(catalog):
            raise click.BadParameter(f"{catalog!r} is not a postgresql:// URL", param_hint="--catalog")
        ctx.obj.catalog = catalog


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rustybackup`` script and of ``python -m rustybackup``.

    Click's own usage errors print a usage block; scripts read stderr a line at a time,
    so they become one line here, still with exit code 2.
    """
    try:
        result = cli.main(args=argv, prog_name="rustybackup", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "rustybackup"
        click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_PROBLEM)
    sys.exit(result if isinstance(result, int) else EXIT_OK)
