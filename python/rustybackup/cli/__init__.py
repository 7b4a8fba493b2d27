"""The ``rustybackup`` command line.

Conventions every subcommand keeps: ``--json`` on listings, exit codes scripts can trust
(0 ok, 1 a problem found, 2 usage or invalid input), errors as one line without a
traceback unless ``--debug``, ``--repo`` or ``RUSTYBACKUP_REPO`` for the repository.
Each area's commands live in their own module and register themselves on the group.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, RustyBackupError
from . import (
    backup_cmds,
    capture_cmds,
    cron_cmds,
    demo_cmds,
    hash_cmds,
    metrics_cmds,
    pg_cmds,
    plan_cmds,
    retention_cmds,
    schedule_cmds,
    verify_cmds,
)
from .context import CliState

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


class _Group(click.Group):
    """Turns library errors into one line on stderr with a trustworthy exit code."""

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
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
            ctx.exit(EXIT_PROBLEM)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RUSTYBACKUP_REPO",
    default=None,
    help="Repository directory (or set RUSTYBACKUP_REPO).",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="rustybackup")
@click.pass_context
def cli(ctx: click.Context, repo: Path | None, verbose: int, debug: bool) -> None:
    """rustybackup: schedule, perform, catalog, retain and verify backups.

    Example: rustybackup --repo /backups init
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(repo=repo, debug=debug)


for _module in (
    cron_cmds, hash_cmds, backup_cmds, verify_cmds, retention_cmds, schedule_cmds, demo_cmds, pg_cmds, capture_cmds,
    metrics_cmds, plan_cmds,
):
    _module.register(cli)


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
