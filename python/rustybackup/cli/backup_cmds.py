"""``rustybackup`` subcommands of the repository: init, db add, backup, list, restore, report."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click

from ..catalog import set_json
from ..engine import BackupManager, BackupProgress
from ..enums import BackupType
from ..manifest import Summary
from ..mirrors import has_copies, mirror_status
from ..ratelimit import parse_rate
from ..selection import Selection
from ..sources import label
from .context import CliState, pass_state, print_json, print_table
from .remote_opts import upload_limit_options, upload_schedule

_TYPES = {"full": "full", "incremental": "incremental", "differential": "differential", "archive-log": "archive_log"}


def _manager(state: CliState) -> BackupManager:
    return state.open_manager()


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def selection_options(f: Callable[..., None]) -> Callable[..., None]:
    """--exclude, --exclude-file, --exclude-caches, --one-file-system (selection.py)."""
    for option in reversed(
        [
            click.option(
                "--exclude",
                multiple=True,
                metavar="PATTERN",
                help="Leave out what this gitignore pattern matches (repeatable; '!' re-includes).",
            ),
            click.option(
                "--exclude-file",
                "exclude_files",
                multiple=True,
                type=click.Path(path_type=Path),
                help="Leave out what the patterns in this file match, one a line (repeatable).",
            ),
            click.option(
                "--exclude-caches", is_flag=True, help="Leave out the contents of directories tagged CACHEDIR.TAG."
            ),
            click.option("--one-file-system", is_flag=True, help="Do not enter directories on other file systems."),
        ]
    ):
        f = option(f)
    return f


@click.command("init")
@click.option(
    "--create-bucket", is_flag=True, help="For an s3:// repository: create the bucket when it does not exist."
)
@click.option(
    "--encryption",
    is_flag=True,
    help="Encrypt the new repository (passphrase from RUSTYBACKUP_PASSWORD/--password-file, and/or --key-file).",
)
@pass_state
def init_cmd(state: CliState, create_bucket: bool, encryption: bool) -> None:
    """Create (or open and check) the repository.

    Example: rustybackup --repo /backups init
    """
    if create_bucket and state.url is None:
        raise click.UsageError("--create-bucket is for an s3:// repository")
    if encryption:
        from .. import keys, store

        password, key_file = keys.given_credentials()
        if state.url is not None:
            from .. import remote_keys

            # Key slots and keyring become objects of the bucket (remote_keys.py).
            slots = remote_keys.init_encryption(
                state.url, password=password, key_file=key_file, create_bucket=create_bucket
            )
        else:
            root = state.require_repo()
            store.Repository(root)
            slots = keys.init_encryption(root, password=password, key_file=key_file)
        click.echo(f"encryption on: slots {', '.join(f'{s.id} ({s.kind})' for s in slots)}")
    m = state.open_manager(create=True, create_bucket=create_bucket)
    click.echo(f"repository ready at {m.remote.url if m.remote is not None else m.repository}")


@click.group("db")
def db_group() -> None:
    """Register backup sources.

    Example: rustybackup db add orders --kind sqlite --path /srv/orders.db
    """


@db_group.command("add")
@click.argument("name")
@click.option(
    "--path",
    "--pgdata",
    "path",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory, file, SQLite database or PostgreSQL data directory.",
)
@click.option("--kind", type=click.Choice(["files", "sqlite", "postgresql"]), default="files", show_default=True)
@click.option("--dsn", default=None, help="postgresql: how to connect (a libpq conninfo, e.g. 'host=/run/postgresql').")
@click.option("--archive-dir", type=click.Path(path_type=Path), default=None, help="WAL/redo archive directory.")
@click.option("--block-size", type=int, default=8192, show_default=True)
@click.option("--algorithm", default="blake3", show_default=True)
@click.option("--compression", type=click.Choice(["zstd"]), default=None)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    help="Also write every backup to this repository (directory or s3:// URL; repeatable).",
)
@selection_options
@pass_state
def db_add(
    state: CliState,
    name: str,
    path: Path,
    kind: str,
    archive_dir: Path | None,
    block_size: int,
    algorithm: str,
    compression: str | None,
    dsn: str | None,
    mirrors: tuple[str, ...],
    exclude: tuple[str, ...],
    exclude_files: tuple[Path, ...],
    exclude_caches: bool,
    one_file_system: bool,
) -> None:
    """Register database NAME (or update its settings).

    Example: rustybackup db add orders --kind sqlite --path /srv/orders.db --archive-dir /srv/wal
    """
    m = _manager(state)
    e = m.register_database(
        name,
        path,
        kind,
        archive_dir,
        block_size,
        algorithm,
        compression,
        dsn=dsn,
        mirrors=mirrors or None,
        exclude=exclude,
        exclude_files=exclude_files,
        exclude_caches=exclude_caches,
        one_file_system=one_file_system,
    )
    click.echo(f"registered {e.name}: {e.kind} at {e.path}")


@db_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def db_list(state: CliState, as_json: bool) -> None:
    """List registered databases.

    Example: rustybackup db list --json
    """
    dbs = _manager(state).databases()
    if as_json:
        print_json(
            [
                {**d.__dict__, "registered_at": d.registered_at.isoformat(), "selection": d.selection.plain()}
                for d in dbs
            ]
        )
        return
    from rich.table import Table

    table = Table("name", "kind", "path", "archive dir", "block", "algorithm", "compression")
    for d in dbs:
        table.add_row(d.name, d.kind, d.path, d.archive_dir or "", str(d.block_size), d.algorithm, d.compression or "")
    print_table(table)


@click.command("backup")
@click.argument("name")
@click.option("--type", "btype", type=click.Choice(list(_TYPES)), default="incremental", show_default=True)
@click.option("--tag", "tags", multiple=True, help="Tag the set (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the new set as JSON.")
@click.option("--io-limit", default=None, metavar="RATE", help="Cap the source reads, e.g. 50MiB/s.")
@click.option("--force-read", is_flag=True, help="Read every file, even those unchanged since the parent set.")
@selection_options
@upload_limit_options
@pass_state
def backup_cmd(
    state: CliState,
    name: str,
    btype: str,
    tags: tuple[str, ...],
    as_json: bool,
    io_limit: str | None,
    upload_limits: tuple[str, ...],
    upload_tz: str,
    force_read: bool,
    exclude: tuple[str, ...],
    exclude_files: tuple[Path, ...],
    exclude_caches: bool,
    one_file_system: bool,
) -> None:
    """Back up database NAME.

    Example: rustybackup backup orders --type full --tag weekly
    """
    schedule = upload_schedule(upload_limits, upload_tz)
    m = _manager(state)
    m.upload_limits = schedule
    with _bar(f"{name} {btype}", as_json, eta=True) as update:
        on_progress: Callable[[BackupProgress], None] | None = (
            None if update is None else (lambda p: update(p.bytes_done, p.bytes_total))
        )
        limit = parse_rate(io_limit, "--io-limit") if io_limit is not None else None
        extra = Selection.build(
            exclude=list(exclude),
            exclude_files=[str(f) for f in exclude_files],
            exclude_caches=exclude_caches,
            one_file_system=one_file_system,
            where="backup",
        )
        s = m.backup(
            name,
            BackupType(_TYPES[btype]),
            tags=tags,
            progress=on_progress,
            io_limit=limit,
            force_read=force_read,
            selection=None if extra.empty else extra,
        )
    summary = m.summary(s.id)
    if as_json:
        print_json({**set_json(s), "summary": summary.to_json()})
    else:
        secs = max((s.finished_at - s.started_at).total_seconds(), 1e-9)
        click.echo(
            f"{s.id}: {s.backup_type.value} of {s.database}, read {_size(s.bytes_read)}, "
            f"stored {_size(s.size)} in {secs:.1f}s ({_size(int(s.bytes_read / secs))}/s)"
        )
    _warn(summary)


@contextmanager
def _bar(title: str, quiet: bool, *, eta: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress bar on stderr when it is a terminal, as `update(done, total)`; None
    otherwise (cron, pipes, --json), where rich drew nothing anyway: then rich is not even
    imported (its import is a tenth of a small backup's or restore's CLI start) and the
    engine gets no progress callback."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (
        [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(binary_units=True)]
        + [TransferSpeedColumn()]
        + ([TimeRemainingColumn()] if eta else [])
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(title, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


_SHOWN = 20


def _warn(summary: Summary) -> None:
    """What the backup skipped or saw change, on stderr: the set is good, exit 0, but
    the operator must know it is not a perfect copy (tar and restic warn the same way)."""
    if summary.skipped:
        _warn_list(
            _count(len(summary.skipped), "entry", "entries") + " skipped (not in this set)",
            [f"{label(e.path)}: {e.reason}" for e in summary.skipped],
        )
    if summary.changed:
        _warn_list(
            _count(len(summary.changed), "file", "files")
            + " changed while being read (stored as read; may mix old and new contents)",
            [label(path) for path in summary.changed],
        )


def _warn_list(title: str, lines: list[str]) -> None:
    click.echo(f"warning: {title}:", err=True)
    for line in lines[:_SHOWN]:
        click.echo(f"  {line}", err=True)
    if len(lines) > _SHOWN:
        click.echo(f"  ... and {len(lines) - _SHOWN} more (all are listed in the set's manifest)", err=True)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


_LIST_HEADER = ("id", "database", "type", "parent", "finished", "status", "size", "read", "tags")


@click.command("list")
@click.argument("name", required=False)
@click.option("--type", "btype", type=click.Choice(list(_TYPES)), default=None)
@click.option("--since", default=None, help="Only sets started at or after this time (ISO 8601).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the N newest sets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def list_cmd(
    state: CliState, name: str | None, btype: str | None, since: str | None, limit: int | None, as_json: bool
) -> None:
    """List backup sets (of database NAME), oldest first.

    Rows are printed as they are read, so a catalog of any size lists in flat memory;
    ids are never shortened, whatever the terminal width.

    Example: rustybackup list orders --type full --since 2026-03-01 --limit 20
    """
    catalog = _manager(state).catalog
    # The table shows no pieces: only --json reads them.
    sets = catalog.iter_sets(
        name, None if btype is None else _TYPES[btype], _parse_until(since), limit, with_pieces=as_json
    )
    out = click.get_text_stream("stdout")
    copies = mirror_status(catalog, sets)
    if as_json:
        # One JSON array, written an element at a time.
        out.write("[")
        sep = "\n"
        for s, where in copies:
            row = set_json(s)
            if where is not None:
                row["mirrors"] = {c.repository: {"status": c.status.value, "detail": c.detail} for c in where}
            out.write(sep + "  " + json.dumps(row))
            sep = ",\n"
        out.write("\n]\n" if sep != "\n" else "]\n")
        return
    # Column widths known before the first row: ids have one length, database names
    # are bounded by the registered ones, the other columns by their formats.
    names = [d.name for d in catalog.list_databases()] + ([name] if name else [])
    least = (_ID_WIDTH, max(map(len, names), default=0), 12, _ID_WIDTH, 25, 9, 10, 10)
    widths = tuple(max(w, len(h)) for w, h in zip(least, _LIST_HEADER, strict=False))
    header: tuple[str, ...] = _LIST_HEADER
    if has_copies(catalog):
        header, widths = (*header, "mirrors"), (*widths, len(header[-1]))
    out.write(_row(header, widths))
    for s, where in copies:
        mirrored = () if where is None else ("; ".join(f"{c.repository}: {c.status.value}" for c in where) or "-",)
        out.write(
            _row(
                (
                    s.id,
                    s.database,
                    s.backup_type.value,
                    s.parent_id or "-",
                    s.finished_at.isoformat(timespec="seconds"),
                    s.status.value,
                    _size(s.size),
                    _size(s.bytes_read),
                    ",".join(s.tags),
                    *mirrored,
                ),
                widths,
            )
        )


_ID_WIDTH = len("20260101T000000000000Z-00000000")


def _row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    """One plain line, columns padded to `widths` (a longer cell widens its column
    rather than being cut), the last column unpadded."""
    return "  ".join(c.ljust(w) for c, w in zip(cells, (*widths, 0), strict=True)).rstrip() + "\n"


def _parse_until(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. 2026-01-31T14:00:00+00:00)") from None
    # A wall time without an offset means the local zone, as for `date`.
    return dt if dt.tzinfo is not None else dt.astimezone()


@click.command("restore")
@click.argument("name")
@click.option("--to", "target", required=True, type=click.Path(path_type=Path), help="Absent or empty directory.")
@click.option("--until", default=None, help="Point in time (ISO 8601); default: the newest.")
@click.option("--set", "set_id", default=None, help="Restore exactly this set (and its chain).")
@click.option("--include", "include", multiple=True, help="Restore only what this pattern selects (repeatable).")
@click.option("--delta", is_flag=True, help="Restore into an existing tree, rewriting only what differs.")
@click.option("--delete", is_flag=True, help="With --delta: remove entries the set does not hold.")
@click.option("--numeric-owner", is_flag=True, help="Apply the recorded uid/gid, not the user and group names.")
@pass_state
def restore_cmd(
    state: CliState,
    name: str,
    target: Path,
    until: str | None,
    set_id: str | None,
    include: tuple[str, ...],
    delta: bool,
    delete: bool,
    numeric_owner: bool,
) -> None:
    """Restore database NAME into the directory given by --to.

    Example: rustybackup restore orders --to /tmp/orders --until 2026-03-01T02:30
    """
    if until is not None and set_id is not None:
        raise click.UsageError("give --until or --set, not both")
    if delete and not delta:
        raise click.UsageError("--delete only goes with --delta")
    from ..restore import RestoreOptions

    options = RestoreOptions(include, delta=delta, delete=delete, numeric_owner=numeric_owner)
    m = _manager(state)
    with _bar("restore", False, eta=False) as update:
        path = m.restore(
            name,
            target,
            until=_parse_until(until),
            backup_set_id=set_id,
            progress=None if update is None else (lambda done: update(done, None)),
            options=options,
        )
    click.echo(f"restored {name} into {target} from {' -> '.join(s.id for s in path)}")
    from .tree_cmds import echo_report

    echo_report(path.report, delta=delta)


@click.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def report_cmd(state: CliState, as_json: bool) -> None:
    """Counts, sizes and chains per database.

    Example: rustybackup report --json
    """
    rep = _manager(state).catalog.report()
    if as_json:
        print_json(rep)
        return
    from rich.table import Table

    table = Table("database", "sets", "full", "incr", "diff", "archive", "corrupt", "chains", "size", "newest")
    for db, r in rep["databases"].items():
        t = r["by_type"]
        table.add_row(
            db,
            str(r["sets"]),
            str(t["full"]),
            str(t["incremental"]),
            str(t["differential"]),
            str(t["archive_log"]),
            str(r["by_status"]["corrupt"]),
            str(r["chains"]),
            _size(r["size"]),
            r["newest"] or "",
        )
    print_table(table)


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    for cmd in (init_cmd, db_group, backup_cmd, list_cmd, restore_cmd, report_cmd):
        group.add_command(cmd)
