"""The foreground capturer's spool and frequent rollovers (capture_spool.py): the WAL
restarts many times a second under a writer at synchronous=NORMAL, every generation is
copied before the restart that overwrites it, a set holds several generations, and a
restore to any instant holds exactly what the writer's own log says was committed by
then. Also the manifest's record of a set of several generations (kind "captures")."""

from __future__ import annotations

import bisect
import copy
import random
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from capture_support import Clock, LoggedWriter, assert_restored_prefix, restored_ids, shop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import manifest, store
from rustybackup.capture_loop import Capturer
from rustybackup.catalog import BackupSet
from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType
from rustybackup.errors import CatalogError
from rustybackup.sqlite_wal import WalCapture, wal_path, wal_record_from_json
from rustybackup.timestamps import from_us, to_us

# --- a live writer ---------------------------------------------------------------------


class Writer(LoggedWriter):
    """Commits transactions of random sizes at synchronous=NORMAL (a row of up to three
    pages, several rows at once: a commit spans 1..many frames); each row stores its id,
    and the log keeps (id, time before COMMIT, time after it returned)."""

    pause = 0.0005

    def __init__(self, path: Path, clock: Clock, seed: int) -> None:
        super().__init__(path, clock)
        self.rng = random.Random(seed)

    def prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")

    def count(self) -> int:
        return self.rng.choice((1, 1, 2, 5))

    def insert(self, conn: sqlite3.Connection, row_id: int, before: datetime) -> None:
        pad = self.rng.randbytes(self.rng.choice((20, 300, 3000, 9000)))
        conn.execute("INSERT INTO t VALUES (?, ?)", (row_id, pad))


def _make_db(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB)")
    conn.close()


def _records(manager: BackupManager) -> list[tuple[BackupSet, WalCapture]]:
    out = []
    for s in manager.catalog.list_sets("shop", BackupType.ARCHIVE_LOG):
        wal = manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST).wal
        assert isinstance(wal, WalCapture)
        out.append((s, wal))
    return out


def _check(manager: BackupManager, writer: Writer, until: datetime, target: Path) -> int:
    """A restore to `until`: a prefix of the writer's commits, none begun after `until`,
    and every one that returned before a set whose commits were all seen by `until`
    began (the set's step copied the WAL after it began)."""
    path = manager.restore("shop", target, until=until)
    ids = restored_ids(target / "shop.db")
    floor = path[0].started_at
    for s in path[1:]:
        m = manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST)
        if isinstance(m.wal, WalCapture) and m.wal.last.commits and m.wal.last.commits[-1][1] <= to_us(until):
            floor = max(floor, s.started_at)
    # And every one that returned before the copy that saw the last commit seen by
    # `until` began (it began after the copy before it saw its commits), whichever set
    # holds it: a set can finish well after it saw its commits.
    seen = sorted({t for _, wal in _records(manager) for r in wal.chain for _, t in r.commits})
    at = bisect.bisect_right(seen, to_us(until)) - 1
    if at >= 1:
        floor = max(floor, from_us(seen[at - 1]))
    assert_restored_prefix(ids, writer.log, until, floor)
    return len(ids)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), picks=st.lists(st.floats(0, 1), min_size=6, max_size=6))
def test_restore_to_random_instants_under_frequent_rollovers(
    tmp_path_factory: pytest.TempPathFactory, seed: int, picks: list[float]
) -> None:
    tmp = tmp_path_factory.mktemp("spool")
    db, clock, manager = shop(tmp, _make_db)
    writer = Writer(db, clock, seed)
    writer.start()
    stop = threading.Event()
    loop = Capturer(BackupManager(tmp / "repo", clock=clock), "shop", interval=0.15, tick=0.002, rollover_frames=12)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    try:
        while not writer.log:
            time.sleep(0.001)
        manager.backup("shop", BackupType.FULL)
        thread.start()
        time.sleep(0.6)
        manager.backup("shop", BackupType.INCREMENTAL)
        time.sleep(0.6)
    finally:
        writer.stop.set()
        writer.join()
        stop.set()
        if thread.ident is not None:
            thread.join()
    assert writer.error is None, writer.error
    assert loop.rollovers >= 3, "the WAL never restarted under the capturer"
    sets = _records(manager)
    chain = [r for _, wal in sets for r in wal.chain]
    assert all(r.continuous for r in chain[1:]), [r.note for r in chain if not r.continuous]
    assert any(wal.then for _, wal in sets), "no set holds more than one WAL generation"
    restarted = [r for r in chain if "while the capturer pinned it" in r.note]
    assert len(restarted) >= 3
    # Each generation continues the previous one at its last frame: nothing between.
    for prev, rec in zip(chain, chain[1:], strict=False):
        if rec.generation != prev.generation:
            assert prev.salt is not None
            assert rec.follows == (prev.salt[0], prev.salt[1], prev.last_frame)
        elif not rec.empty and not prev.empty:
            assert rec.first_frame == prev.last_frame + 1
    start = manager.catalog.list_sets("shop")[0].finished_at
    end = clock()
    instants = sorted(start + (end - start) * p for p in picks) + [end]
    counts = [_check(manager, writer, t, tmp / f"r{n}") for n, t in enumerate(instants)]
    assert counts == sorted(counts)
    assert counts[-1] == len(writer.log), "the latest restore must hold every commit"


# --- the record of a set of several generations ----------------------------------------


def _chain(n: int, rng: random.Random) -> WalCapture:
    """`n` records as a spool writes them: generations that follow one another, some cut
    in two by a set boundary (the same generation from the next frame)."""
    recs: list[WalCapture] = []
    gen, salt, frame, seen = 5, (rng.getrandbits(32), rng.getrandbits(32)), 0, 1_000
    csum = (1, 2)
    for i in range(n):
        if i and rng.random() < 0.6:
            gen, follows, salt, frame = gen + 1, (salt[0], salt[1], frame), (salt[0] + 1, rng.getrandbits(32)), 0
        else:
            follows = None
        first = frame + 1
        commits = []
        for _ in range(rng.randint(1, 5)):
            frame += rng.randint(1, 4)
            seen += rng.randint(0, 3)
            commits.append((frame, seen))
        seed = csum if first > 1 else (rng.getrandbits(32), rng.getrandbits(32))
        csum = (rng.getrandbits(32), rng.getrandbits(32))
        recs.append(
            WalCapture(
                generation=gen,
                salt=salt,
                page_size=4096,
                first_frame=first,
                last_frame=frame,
                seed=seed,
                checksum=csum,
                commits=tuple(commits),
                continuous=True,
                note="",
                file=f"wal-{gen:06d}-{first:010d}-{frame:010d}",
                follows=follows if first == 1 else None,
            )
        )
    return replace(recs[0], then=tuple(recs[1:]))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 2**32 - 1))
def test_a_set_of_several_generations_round_trips(n: int, seed: int) -> None:
    rec = _chain(n, random.Random(seed))
    doc = rec.to_json()
    assert doc["kind"] == "captures" and len(doc["records"]) == n
    assert wal_record_from_json(doc, "m.json") == rec
    assert rec.last == rec.chain[-1] and rec.chain[0].then == rec.then


def _damaged(doc: dict[str, Any], i: int, **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["records"][i].update(fields)
    return out


def test_a_damaged_set_of_several_generations_is_named() -> None:
    rec = _chain(4, random.Random(3))
    doc = rec.to_json()
    r1 = doc["records"][1]
    cases: list[tuple[object, str]] = [
        ({"kind": "captures", "records": doc["records"][:1]}, r"wal\.records: expected a list of at least two"),
        ({"kind": "captures", "records": "x"}, r"wal\.records: expected a list"),
        ({"kind": "captures"}, r"wal\.records: missing"),
        (_damaged(doc, 2, kind="position"), r"wal\.records\[2\]: expected a capture record"),
        (_damaged(doc, 1, first_frame=r1["first_frame"] + 7), r"wal\.records\[1\]"),
        (_damaged(doc, 1, generation=r1["generation"] + 3), r"wal\.records\[1\]: does not continue records\[0\]"),
        (_damaged(doc, 3, continuous=False), r"wal\.records\[3\]: every record .* is continuous"),
        (_damaged(doc, 1, page_size="big"), r"wal\.records\[1\]: wal\.page_size"),
        (_damaged(doc, 1, file=doc["records"][0]["file"]), r"same file|does not continue"),
    ]
    for bad, pattern in cases:
        with pytest.raises(CatalogError, match=pattern):
            wal_record_from_json(bad, "sets/x/manifest.json")
    # A reader's message names the manifest too.
    with pytest.raises(CatalogError, match=r"sets/x/manifest\.json"):
        wal_record_from_json(cases[0][0], "sets/x/manifest.json")


@pytest.mark.parametrize("capturer_first", [False, True])
def test_the_wal_stays_short_under_the_capturer(tmp_path: Path, capturer_first: bool) -> None:
    """The point of the rollovers: the WAL file stays far below SQLite's 1000-page
    automatic checkpoint while the capturer pins it. Also when the capturer started
    before the first commit (its first step finds no WAL, and its pin then keeps every
    checkpoint from backfilling until the spool runs: that must not wait an interval)."""
    db, clock, manager = shop(tmp_path, _make_db)
    writer = Writer(db, clock, 11)
    stop = threading.Event()
    loop = Capturer(manager, "shop", interval=1.0 if capturer_first else 0.2, tick=0.002, rollover_frames=40)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    if capturer_first:
        thread.start()
        # Bounded: a capturer that died before its first set must fail the test, not hang it.
        deadline = time.monotonic() + 60
        while not manager.catalog.list_sets("shop"):
            assert thread.is_alive() and time.monotonic() < deadline, "the capturer registered no set"
            time.sleep(0.002)
        writer.start()
    else:
        writer.start()
        thread.start()
    sizes = []
    for _ in range(40):
        time.sleep(0.025)
        sizes.append(wal_path(db).stat().st_size)
    stop.set()
    thread.join()
    writer.stop.set()
    writer.join()
    assert writer.error is None
    frames = sum(r.last_frame - r.first_frame + 1 for _, w in _records(manager) for r in w.chain if not r.empty)
    longest = max(r.last_frame for _, w in _records(manager) for r in w.chain)
    assert loop.rollovers >= 2 and frames > longest
    # Its size is the longest generation's: well below 1000 pages of 4 KiB.
    assert max(sizes) < 1000 * 4120, sizes
