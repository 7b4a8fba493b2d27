"""The seam between the catalog's one row reader (catalog.py) and the database under
it: SQLite (the embedded default, ``REPO/catalog.db``) or PostgreSQL (a shared catalog,
catalog_pg.py).

catalog.py, history and verification records write their SQL once, in SQLite's
dialect; `PgConnection` offers the part of ``sqlite3.Connection`` they use
(``execute``, ``executemany``, cursors, ``in_transaction``) and translates each
statement once (cached): ``?`` placeholders, ``BEGIN IMMEDIATE``, ``INSERT OR
IGNORE``/``INSERT OR REPLACE`` (an upsert on the table's key). Everything that differs
beyond the text of a statement is a function here: change detection for the chain
cache (`change_state`), whether a table exists (`has_table`), the error classes
(`DB_ERRORS`, `INTEGRITY_ERRORS`).

A lost server connection (PostgreSQL restarted under a running node) is reopened on the
next statement that starts outside a transaction, for up to `RECONNECT_SECONDS`; inside
a transaction it is an error (the transaction is gone), raised as `DbConnectionLost`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, TypeAlias

from .errors import CatalogError

log = logging.getLogger(__name__)

__all__ = [
    "DB_ERRORS",
    "REGISTRATION_FENCE",
    "Conn",
    "INTEGRITY_ERRORS",
    "DbConnectionLost",
    "DbError",
    "DbIntegrityError",
    "PgConnection",
    "PgSnapshot",
    "change_state",
    "has_table",
    "is_shared",
    "is_shared_url",
    "translate",
]

#: How long a statement outside a transaction keeps trying to reach a restarted server.
RECONNECT_SECONDS = 60.0


class DbError(CatalogError):
    """A PostgreSQL error in a catalog statement (the message names the statement)."""


class DbIntegrityError(DbError):
    """A key or constraint refused a row (what ``sqlite3.IntegrityError`` is for SQLite)."""


class DbConnectionLost(DbError):
    """The server went away inside a transaction: the transaction did not commit."""


DB_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, DbError)
INTEGRITY_ERRORS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, DbIntegrityError)


def is_shared_url(location: object) -> bool:
    """True for a PostgreSQL connection URL (what selects the shared catalog)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def is_shared(conn: object) -> bool:
    return isinstance(conn, PgConnection)


def change_state(conn: sqlite3.Connection | PgConnection) -> tuple[object, ...] | None:
    """A value that differs after any commit to the catalog, or None when the database
    cannot say cheaply (PostgreSQL: another node's commit moves nothing this session can
    read without a query as costly as the rows themselves), so nothing is cached."""
    if isinstance(conn, PgConnection):
        return None
    # data_version moves when another connection commits, total_changes when this one writes.
    (data_version,) = conn.execute("PRAGMA data_version").fetchone()
    return (conn, data_version, conn.total_changes)


def has_table(conn: sqlite3.Connection | PgConnection, name: str) -> bool:
    if isinstance(conn, PgConnection):
        return conn.has_table(name)
    return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchall())


# --- statement translation ---------------------------------------------------------------

_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\s+", re.I)
_OR_REPLACE = re.compile(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", re.I)


@functools.lru_cache(maxsize=512)
def translate(sql: str, tables: Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]]) -> str:
    """`sql` (SQLite's dialect, as the catalog writes it) in PostgreSQL's. `tables`
    gives a table's (key columns, all columns in order), for INSERT OR REPLACE."""
    text = sql.strip()
    if re.match(r"^BEGIN\s+IMMEDIATE\b", text, re.I):
        return "BEGIN"
    if text.upper().startswith("PRAGMA"):
        raise CatalogError(f"internal: a SQLite PRAGMA reached the PostgreSQL catalog: {text[:60]}")
    suffix = ""
    if _OR_IGNORE.match(text):
        text = _OR_IGNORE.sub("INSERT INTO ", text, count=1)
        suffix = " ON CONFLICT DO NOTHING"
    elif m := _OR_REPLACE.match(text):
        table = m.group(1)
        key, all_columns = tables(table)
        columns = [c.strip() for c in m.group(3).split(",")] if m.group(3) else list(all_columns)
        rest = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
        head = f"INSERT INTO {table} ({', '.join(columns)})"
        text = f"{head} {text[m.end() :].lstrip()}"
        suffix = f" ON CONFLICT ({', '.join(key)}) " + (f"DO UPDATE SET {rest}" if rest else "DO NOTHING")
    return _placeholders(text) + suffix


def _placeholders(sql: str) -> str:
    """``?`` -> ``%s`` and ``%`` -> ``%%``, outside quoted literals."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


# --- the PostgreSQL connection -------------------------------------------------------------


class PgCursor:
    """The cursor interface the catalog reads (fetchone/fetchall/fetchmany/rowcount)."""

    def __init__(self, cur: Any, owner: PgConnection) -> None:
        self._cur = cur
        self._owner = owner

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    def _rows(self, fetch: Callable[[], Any]) -> Any:
        if self._cur.description is None:
            return []
        try:
            return fetch()
        except self._owner.psycopg.Error as exc:
            raise self._owner.wrap(exc, "fetching rows") from exc

    def fetchone(self) -> Any:
        if self._cur.description is None:
            return None
        return self._rows(self._cur.fetchone)

    def fetchall(self) -> list[Any]:
        return list(self._rows(self._cur.fetchall))

    def fetchmany(self, size: int = 1000) -> list[Any]:
        return list(self._rows(lambda: self._cur.fetchmany(size)))

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class PgConnection:
    """One psycopg 3 connection (autocommit; transactions are explicit BEGIN/COMMIT, as
    the catalog issues them for SQLite), scoped to one repository's schema by its
    ``search_path``. `tables` tells the translator each table's key and columns."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None,
        tables: Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]],
        where: str,
    ) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise CatalogError(
                "a PostgreSQL catalog needs psycopg 3: pip install 'rustybackup[shared-catalog]'"
            ) from exc
        self.psycopg = psycopg
        self.url = url
        self.schema = schema
        self.where = where
        self._tables = tables
        self._lock = threading.RLock()
        self._in_tx = False
        self._conn: Any = None
        # A catalog dropped without close() (a CLI command's manager at exit) still
        # closes its connection, and the reopened ones after a server restart.
        self._opened: list[Any] = []
        weakref.finalize(self, _close_all, self._opened)
        self._open()

    # --- connection life --------------------------------------------------------------

    def _open(self) -> None:
        try:
            conn = self.psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except self.psycopg.Error as exc:
            raise DbError(f"cannot reach the shared catalog {self.where}: {_first_line(exc)}") from exc
        self._opened[:] = [c for c in self._opened if not c.closed]
        self._opened.append(conn)
        if self.schema is not None:
            conn.execute(f'SET search_path TO "{self.schema}"')
        self._conn = conn

    def set_schema(self, schema: str) -> None:
        with self._lock:
            self.schema = schema
            self._conn.execute(f'SET search_path TO "{schema}"')

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    @property
    def raw(self) -> Any:
        """The psycopg connection (catalog_pg's schema work)."""
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    def _lost(self, exc: BaseException) -> bool:
        return isinstance(exc, self.psycopg.OperationalError) and (self._conn is None or self._conn.closed)

    def wrap(self, exc: BaseException, what: str) -> DbError:
        text = f"shared catalog {self.where}: {what}: {_first_line(exc)}"
        if isinstance(exc, self.psycopg.IntegrityError):
            return DbIntegrityError(text)
        if self._lost(exc) or isinstance(exc, self.psycopg.OperationalError):
            return DbConnectionLost(text)
        return DbError(text)

    # --- statements -------------------------------------------------------------------

    def execute(self, sql: str, args: Sequence[Any] | Iterable[Any] = ()) -> PgCursor:
        stmt = translate(sql, self._tables)
        with self._lock:
            return self._run(stmt, lambda c: c.execute(stmt, list(args)))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        stmt = translate(sql, self._tables)
        batch = [list(r) for r in rows]
        with self._lock:
            if not batch:
                return PgCursor(self._conn.cursor(), self)
            return self._run(stmt, lambda c: c.executemany(stmt, batch))

    def script(self, sql: str, args: dict[str, Any]) -> list[list[tuple[Any, ...]]]:
        """Several statements (PostgreSQL's dialect, ``%(name)s`` parameters bound on the
        client) sent in one round trip and run as one transaction, each with a fresh
        snapshot: the rows of each statement, in order. A scheduler's claim is one of
        these (claims.py), so a claim costs one round trip, not six. Outside a
        transaction only; a connection lost before the answer is tried again, so the
        script must be safe to repeat."""
        results: list[list[tuple[Any, ...]]] = []

        def call(cur: Any) -> None:
            results.clear()
            client = self.psycopg.ClientCursor(cur.connection)
            client.execute(sql, args)
            while True:
                results.append(list(client.fetchall()) if client.description is not None else [])
                if not client.nextset():
                    break

        with self._lock:
            if self._in_tx:
                raise DbError(f"shared catalog {self.where}: a script cannot run inside a transaction")
            self._run("SCRIPT", call)
        return results

    def _run(self, stmt: str, call: Callable[[Any], Any]) -> PgCursor:
        verb = stmt.split(None, 1)[0].upper() if stmt else ""
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            starts_tx = verb == "BEGIN"
            if self._conn is None or self._conn.closed:
                if self._in_tx and verb not in ("ROLLBACK",):
                    raise DbConnectionLost(f"shared catalog {self.where}: the server went away inside a transaction")
                if verb == "ROLLBACK":
                    self._in_tx = False
                    return PgCursor(_NoRows(), self)
                self._reopen(deadline)
            cur = self._conn.cursor()
            try:
                call(cur)
            except self.psycopg.Error as exc:
                if self._lost(exc) and not self._in_tx and not starts_tx and time.monotonic() < deadline:
                    log.warning("shared catalog %s: connection lost (%s); reconnecting", self.where, _first_line(exc))
                    continue
                if self._lost(exc) and starts_tx and time.monotonic() < deadline:
                    continue
                if verb in ("COMMIT", "ROLLBACK"):
                    self._in_tx = False
                raise self.wrap(exc, stmt[:80]) from exc
            if starts_tx:
                self._in_tx = True
            elif verb in ("COMMIT", "ROLLBACK", "END"):
                self._in_tx = False
            return PgCursor(cur, self)

    def _reopen(self, deadline: float) -> None:
        delay = 0.05
        while True:
            try:
                self._open()
                return
            except DbError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def has_table(self, name: str) -> bool:
        rows = self.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", (self.schema, name)
        ).fetchall()
        return bool(rows)

    def snapshot(self) -> PgSnapshot:
        """A read snapshot on a connection of its own (`PgSnapshot`)."""
        return PgSnapshot(self)


#: A catalog connection: SQLite's own, or PostgreSQL behind the same interface.
Conn: TypeAlias = sqlite3.Connection | PgConnection

#: A check that `BackupCatalog.register_set` runs inside its transaction, before the
#: insert: a scheduler node sets it around a run (claims.SharedHistory.fence), so a set
#: made under a claim the node has lost is refused in the same transaction that would
#: have registered it.
REGISTRATION_FENCE: ContextVar[Callable[[Conn], None] | None] = ContextVar("rustybackup_fence", default=None)


def _close_all(connections: list[Any]) -> None:
    for c in connections:
        c.close()


class _NoRows:
    description = None
    rowcount = 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgSnapshot:
    """A read-only REPEATABLE READ transaction on a connection of its own (what the
    SQLite catalog's ``mode=ro`` reader is): a long listing streams from one snapshot
    through a server-side cursor, so neither this process nor the server holds the
    whole result, and no writer on the catalog's connection waits on it. Close it
    (or use it as a context manager) to end the transaction."""

    def __init__(self, owner: PgConnection) -> None:
        psycopg = owner.psycopg
        self._owner = owner
        try:
            conn = psycopg.connect(owner.url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise DbError(f"cannot reach the shared catalog {owner.where}: {_first_line(exc)}") from exc
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            if owner.schema is not None:
                conn.execute(f'SET search_path TO "{owner.schema}"')
        except psycopg.Error as exc:
            conn.close()
            raise owner.wrap(exc, "opening a read snapshot") from exc
        self._conn = conn
        self._names = itertools.count()

    def execute(self, sql: str, args: Sequence[Any] | Iterable[Any] = ()) -> PgCursor:
        """One statement (SQLite's dialect, translated) in the snapshot."""
        stmt = translate(sql, self._owner._tables)
        cur = self._conn.cursor()
        try:
            cur.execute(stmt, list(args))
        except self._owner.psycopg.Error as exc:
            raise self._owner.wrap(exc, stmt[:80]) from exc
        return PgCursor(cur, self._owner)

    def stream(self, sql: str, args: Sequence[Any], size: int = 1000) -> Iterator[list[Any]]:
        """The rows of `sql` in batches of `size`, each one FETCH from a server-side
        (named) cursor."""
        stmt = translate(sql, self._owner._tables)
        cur = self._conn.cursor(name=f"rustybackup_stream_{next(self._names)}")
        try:
            cur.execute(stmt, list(args))
            while batch := cur.fetchmany(size):
                yield list(batch)
        except self._owner.psycopg.Error as exc:
            raise self._owner.wrap(exc, stmt[:80]) from exc
        finally:
            if not self._conn.closed:
                try:
                    cur.close()
                except self._owner.psycopg.Error:
                    pass  # the transaction ends with close() anyway

    def close(self) -> None:
        # Read only: nothing to commit; closing ends the transaction and the cursor.
        self._conn.close()

    def __enter__(self) -> PgSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
