"""`BackupCatalog.iter_sets` on a shared (PostgreSQL) catalog streams: a server-side
cursor in a read-only REPEATABLE READ transaction on a connection of its own, a
thousand rows a FETCH, the pieces of each batch queried with it. Checked on a real
server: a 3,000-set catalog streams exactly what `list_sets` returns, the server shows
the paused stream as a FETCH inside an open transaction of another session, a set
registered meanwhile stays out of the stream's snapshot, and the snapshot's session is
gone once the stream ends or is dropped."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import shared_catalog_support
from engine_support import SimClock
from pg_support import psycopg
from rustybackup import BackupManager, CatalogError
from rustybackup.catalog_db import PgConnection
from shared_catalog_support import CatalogServer

catalog_server = shared_catalog_support.catalog_server
catalog_url = shared_catalog_support.catalog_url

SETS = 3000


@pytest.fixture
def manager(tmp_path: Path, catalog_url: str) -> Iterator[BackupManager]:
    clock = SimClock()
    m = BackupManager(tmp_path / "repo", clock=clock, catalog=catalog_url)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 20000)
    m.register_database("db", src)
    m.backup("db", "full")
    yield m
    m.catalog.close()


def _schema(m: BackupManager) -> str:
    conn = m.catalog._conn
    assert isinstance(conn, PgConnection) and conn.schema is not None
    return conn.schema


def _copy_sets(url: str, schema: str, count: int) -> None:
    """`count` copies of the one set (rows and pieces) under new ids, a microsecond
    apart, written straight into the server: registering 3,000 real backups would
    take minutes and the stream reads rows, not archives."""
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        (orig, started) = conn.execute("SELECT id, started_at FROM sets").fetchone()
        set_cols = [d.name for d in conn.execute("SELECT * FROM sets LIMIT 0").description or []]
        piece_cols = [d.name for d in conn.execute("SELECT * FROM pieces LIMIT 0").description or []]
        ids = [f"20300101T{i:012d}Z-{i:08x}" for i in range(1, count)]

        def select(cols: list[str], key: str) -> str:
            out = []
            for c in cols:
                if c == key:
                    out.append("%(new)s")
                elif c == "id":  # a piece's id is "<set id>/<name>"
                    out.append("%(new)s || substr(id, strpos(id, '/'))")
                elif c == "started_at":
                    out.append("started_at + %(n)s")
                else:
                    out.append(c)
            return ", ".join(out)

        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO sets ({', '.join(set_cols)}) SELECT {select(set_cols, 'id')} FROM sets WHERE id = %(old)s",
                [{"new": sid, "n": n, "old": orig} for n, sid in enumerate(ids, 1)],
            )
            cur.executemany(
                f"INSERT INTO pieces ({', '.join(piece_cols)}) SELECT {select(piece_cols, 'set_id')} "
                "FROM pieces WHERE set_id = %(old)s",
                [{"new": sid, "old": orig} for sid in ids],
            )
        conn.commit()
    assert started is not None


def _streams(server: CatalogServer, db: str) -> list[tuple[str, str]]:
    """(state, last query) of every other session on database `db`."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (db,)
        ).fetchall()
    return [(str(s), str(q)) for s, q in rows]


def test_iter_sets_streams_what_list_sets_returns(manager: BackupManager, catalog_url: str) -> None:
    _copy_sets(catalog_url, _schema(manager), SETS)
    cat = manager.catalog
    listed = cat.list_sets()
    assert len(listed) == SETS
    streamed = list(cat.iter_sets())
    assert streamed == listed
    assert all(s.pieces for s in streamed)
    assert [s.id for s in cat.iter_sets(limit=1500, with_pieces=False)] == [s.id for s in listed[-1500:]]
    assert all(not s.pieces for s in cat.iter_sets(limit=10, with_pieces=False))
    assert [s.id for s in cat.iter_sets("db", "full", since=listed[2000].started_at)] == [s.id for s in listed[2000:]]
    assert list(cat.iter_sets("nope")) == []


def test_the_stream_is_a_server_side_cursor_in_its_own_snapshot(
    manager: BackupManager, catalog_url: str, catalog_server: CatalogServer, tmp_path: Path
) -> None:
    _copy_sets(catalog_url, _schema(manager), SETS)
    db = catalog_url.split("/")[3].split("?")[0]
    cat = manager.catalog
    before = _streams(catalog_server, db)
    stream = cat.iter_sets(with_pieces=False)
    first = [next(stream) for _ in range(1000)]
    # One batch is in hand and the rest waits on the server: the stream's session sits
    # in an open transaction, its last statement a FETCH of a thousand rows.
    during = [q for q in _streams(catalog_server, db) if q not in before]
    assert [(s, q.split(" FROM")[0]) for s, q in during] == [("idle in transaction", "FETCH FORWARD 1000")]
    # A set registered now (through the catalog's own connection, not blocked by the
    # reader) is not in the stream's snapshot.
    (tmp_path / "src" / "f").write_bytes(b"y" * 20000)
    added = manager.backup("db", "full").id
    rest = list(stream)
    assert len(first) + len(rest) == SETS
    assert added not in {s.id for s in first + rest}
    assert added in {s.id for s in cat.list_sets()}
    # Finished: the snapshot's session is closed.
    assert [q for q in _streams(catalog_server, db) if q not in before] == []
    # Dropped half way: closing the generator closes it too.
    partial = cat.iter_sets(with_pieces=False)
    assert isinstance(partial, Generator)
    next(partial)
    assert len([q for q in _streams(catalog_server, db) if q not in before]) == 1
    partial.close()
    assert [q for q in _streams(catalog_server, db) if q not in before] == []


def test_a_damaged_row_mid_stream_names_it_and_ends_the_snapshot(
    manager: BackupManager, catalog_url: str, catalog_server: CatalogServer
) -> None:
    schema = _schema(manager)
    _copy_sets(catalog_url, schema, SETS)
    damaged = f"20300101T{1500:012d}Z-{1500:08x}"
    with psycopg.connect(catalog_url, autocommit=True) as conn:
        conn.execute(f"UPDATE \"{schema}\".sets SET parent_id = 'bogus' WHERE id = %s", (damaged,))
    db = catalog_url.split("/")[3].split("?")[0]
    before = _streams(catalog_server, db)
    stream = manager.catalog.iter_sets()
    got = []
    with pytest.raises(CatalogError, match=f"set {damaged}: parent_id 'bogus' is not a backup set id"):
        for s in stream:
            got.append(s.id)
    # Every set before it came through (from two batches), and the snapshot is closed.
    assert len(got) == 1500 and damaged not in got
    assert [q for q in _streams(catalog_server, db) if q not in before] == []
