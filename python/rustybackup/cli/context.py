"""State shared by all subcommands, and helpers every subcommand uses."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

if TYPE_CHECKING:
    # rich is imported where a table is printed: archive-push/get print none, and
    # importing rich costs more than their whole push (cli/__init__.py, COMMANDS).
    from rich.console import Console
    from rich.table import Table

    from ..engine import BackupManager
    from ..repo_url import RepoUrl


@dataclass
class CliState:
    """What the top-level options decided."""

    repo: Path | None
    debug: bool = False
    # A remote repository (s3://...): `repo` is None then.
    url: RepoUrl | None = None
    # A shared catalog (postgresql://...): --catalog or RUSTYBACKUP_CATALOG.
    catalog: str | None = None

    def require_repo(self) -> Path:
        """The repository directory, or a usage error naming both ways to give it."""
        if self.url is not None:
            raise click.UsageError(f"this command needs a local repository directory; {self.url} is remote")
        if self.repo is None:
            raise click.UsageError("no repository: pass --repo DIR or set RUSTYBACKUP_REPO")
        return self.repo

    def require_location(self) -> Path | RepoUrl:
        """The repository, local or remote (commands that work on both)."""
        return self.url if self.url is not None else self.require_repo()

    def open_manager(self, *, create: bool = False, create_bucket: bool = False) -> BackupManager:
        """The repository's manager; without `create`, a missing repository is an error
        that says to run `init`."""
        from ..engine import BackupManager

        where = self.require_location()
        if not create and isinstance(where, Path) and not (where / "format").exists():
            raise click.ClickException(f"no repository at {where}; run `rustybackup --repo {where} init` first")
        if isinstance(where, Path):
            return closed_at_end(BackupManager(where, catalog=self.catalog))
        return closed_at_end(BackupManager(str(where), create=create, create_bucket=create_bucket))


class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)


def closed_at_end(thing: _C) -> _C:
    """`thing` (a manager, a scheduler), closed when the running command's context
    ends: its SQLite connections are not left to the interpreter's exit, which skips
    the cyclic collections (rustybackup/__main__.py)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(thing.close)
    return thing


pass_state = click.make_pass_decorator(CliState)


def print_json(data: Any) -> None:
    """One JSON document on stdout, for scripts."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(table: Table, *, prose: Collection[str] = (), console: Console | None = None) -> None:
    """Prints a rich table without ever cutting a cell short.

    Rich squeezes a table wider than the terminal (or than 80 columns in a pipe) and
    ellipsizes cells: ``20261…`` is not an id anyone can copy. Here every column except
    the ``prose`` ones (free text, which may wrap at spaces) keeps its longest cell on
    one line, and when even that does not fit, the table is printed at the width it
    needs and the terminal wraps the lines instead.
    """
    from rich.cells import cell_len
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console()
    for column in table.columns:
        if column.header in prose:
            column.overflow = "fold"
            continue
        column.no_wrap = True
        column.overflow = "ignore"
        column.min_width = max((cell_len(str(cell)) for cell in column.cells), default=0) or None
    needed = Measurement.get(console, console.options.update(width=1 << 20), table).minimum
    if needed > console.width:
        console.width = needed
    console.print(table)
