"""A foreground capturer killed with SIGKILL at any moment resumes from its spool
(capture_spool.py, capture_recover.py): a real child process runs the capturer under
frequent rollovers and kills itself at a chosen point (after the spool's fsync, before
the rollover's checkpoint; after a rollover; with a set collected but not registered;
with a set registered but its spool files not yet removed) or is killed from outside
at a random moment. A second capturer then runs. Every commit the killed one had
copied is restorable to its instant, nothing is registered twice, and restores on both
sides of the kill hold exactly what the writer's own log says was committed by then."""

from __future__ import annotations

import bisect
import logging
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from rustybackup.capture_loop import Capturer
from rustybackup.catalog import BackupSet
from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType
from rustybackup.errors import NoRecoveryPath
from rustybackup.sqlite_wal import HEADER_LEN, WalCapture
from rustybackup.timestamps import from_us, to_us
from test_capture_pitr import Clock
from test_capture_spool import Writer, _make_db, _records

CHILD = r"""
import os, signal, sys, threading
from pathlib import Path
from rustybackup import capture, capture_spool
from rustybackup.capture_loop import Capturer
from rustybackup.catalog import BackupSet
from rustybackup.engine import BackupManager

repo, point, nth, interval, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
hits = 0

def hit():
    global hits
    if not os.path.exists(go):
        return  # the parent has not yet taken its copy
    hits += 1
    if hits == nth:
        os.kill(os.getpid(), signal.SIGKILL)

if point == "synced":  # the spool fsynced for a rollover, the WAL not yet let restart
    sync = capture_spool.Spool.sync
    def patched(self):
        sync(self)
        hit()
    capture_spool.Spool.sync = patched
elif point == "rolled":  # right after a rollover let the WAL restart
    roll = capture_spool.Roller.roll_over
    def patched(self):
        ok = roll(self)
        if ok:
            hit()
        return ok
    capture_spool.Roller.roll_over = patched
elif point == "collected":  # a set's frames collected from the spool, not registered
    collect = capture.CaptureStep._collect_spooled
    def patched(self, spool):
        out = collect(self, spool)
        hit()
        return out
    capture.CaptureStep._collect_spooled = patched
elif point == "registered":  # a set registered, its spool files not yet removed
    finish = capture.CaptureStep.finish
    def patched(self, registered):
        if registered is not None and self.spool is not None:
            hit()
        finish(self, registered)
    capture.CaptureStep.finish = patched
Capturer(BackupManager(Path(repo)), "shop", interval=interval, tick=0.002, rollover_frames=12).run(threading.Event())
"""

POINTS = [
    ("synced", 3, 60.0),
    ("rolled", 3, 60.0),
    ("collected", 2, 0.25),
    ("registered", 2, 0.25),
    ("outside", 0, 0.25),
]


def _setup(tmp: Path, seed: int) -> tuple[Clock, BackupManager, Writer]:
    db = tmp / "shop.db"
    _make_db(db)
    clock = Clock()
    manager = BackupManager(tmp / "repo", clock=clock)
    manager.register_database("shop", db, kind="sqlite", block_size=4096)
    writer = Writer(db, clock, seed)
    writer.start()
    while not writer.log:
        time.sleep(0.001)
    return clock, manager, writer


def _run_child(tmp: Path, manager: BackupManager, point: str, nth: int, interval: float, seed: int) -> BackupSet:
    """Runs the capturer in a child until it is killed at `point`; returns the FULL copy
    taken once the child pinned the WAL (so its generation is captured)."""
    script = tmp / "child.py"
    script.write_text(CHILD)
    go = tmp / "go"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp / "repo"), point, str(nth), str(interval), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    spool = tmp / "repo" / ".capture-shop.spool"
    deadline = time.monotonic() + 60
    while not spool.is_dir():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    full = manager.backup("shop", BackupType.FULL)
    go.touch()
    if point == "outside":
        time.sleep(random.Random(seed).uniform(0.05, 0.8))
        proc.kill()
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == -signal.SIGKILL, err
    return full


def _capture_for(manager: BackupManager, seconds: float, writer: Writer) -> Capturer:
    """A second capturer for `seconds`, with a FULL copy taken while it runs (the WAL may
    have restarted while nothing captured: later instants need a copy after that); the
    writer stops before it, so it captures every commit."""
    stop = threading.Event()
    loop = Capturer(manager, "shop", interval=0.1, tick=0.002, rollover_frames=12)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(seconds / 2)
    manager.backup("shop", BackupType.FULL)
    time.sleep(seconds / 2)
    writer.stop.set()
    writer.join()
    stop.set()
    thread.join()
    return loop


def _exact(manager: BackupManager, writer: Writer, seen: list[int], until: datetime, target: Path) -> int:
    """A restore to `until` holds a prefix of the writer's commits, none begun after
    `until`, and every one that returned before the copy that saw the last commit seen
    by `until` began (that copy started after the copy before it saw its commits: the
    seen times bound it whenever the copy ran, even one registered after a kill)."""
    path = manager.restore("shop", target, until=until)
    conn = sqlite3.connect(target / "shop.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT id FROM t ORDER BY id")]
    finally:
        conn.close()
    assert ids == list(range(1, len(ids) + 1)), "not a prefix of the commits"
    began = {i: b for i, b, _ in writer.log}
    assert all(began[i] <= until for i in ids), "a row committed after T was restored"
    at = bisect.bisect_right(seen, to_us(until)) - 1  # the last seen time by `until`
    floor = path[0].started_at
    if at >= 1:
        floor = max(floor, from_us(seen[at - 1]))
    must = {i for i, _, after in writer.log if after <= floor}
    missing = sorted(must - set(ids))
    assert not missing, (
        f"restore to {until}: rows {missing[:3]}.. (of {len(missing)}) returned before {floor} are missing"
    )
    return len(ids)


def _overlaps(sets: list[tuple[BackupSet, WalCapture]], instants: list[int]) -> list[int]:
    """Instants among `instants` seen by a set before the set registered before it
    finished (frames spooled while that one registered, or a killed capturer's spool
    registered after its restart): the restore must read a set that finished after T."""
    out = []
    by_finish = sorted(sets, key=lambda x: x[0].finished_at)
    for (prev, _), (_, wal) in zip(by_finish, by_finish[1:], strict=False):
        early = [t for r in wal.chain for _, t in r.commits if t < to_us(prev.finished_at) and t in instants]
        out += early[:1] + early[-1:]
    return out[:4]


@pytest.mark.parametrize(("point", "nth", "interval"), POINTS, ids=[p[0] for p in POINTS])
def test_a_killed_capturer_resumes_from_its_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, point: str, nth: int, interval: float
) -> None:
    seed = sum(map(ord, point))
    clock, manager, writer = _setup(tmp_path, seed)
    try:
        full = _run_child(tmp_path, manager, point, nth, interval, seed)
        killed_at = clock()
        before = {s.id for s, _ in _records(manager)}
        time.sleep(0.1)  # the writer goes on while nothing captures
        with caplog.at_level(logging.INFO, logger="rustybackup"):
            loop = _capture_for(manager, 0.5, writer)
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None, writer.error
    assert loop.sets >= 2
    assert not (tmp_path / "repo" / ".capture-shop.spool").exists()
    sets = _records(manager)
    chain = [r for _, wal in sets for r in wal.chain]
    # Nothing registered twice: every (generation, frame) of a commit once, in order.
    commits = [(r.generation, f) for r in chain for f, _ in r.commits]
    assert commits == sorted(set(commits))
    # What the killed capturer copied, registered by the second one's first step.
    seen_before = [(s, r) for s, wal in sets if s.id not in before for r in wal.chain if r.commits]
    recovered = [r for s, r in seen_before if r.commits[-1][1] <= to_us(killed_at)]
    if point == "registered":
        assert "already registered" in caplog.text
    if point in ("synced", "rolled", "collected"):
        assert recovered, "the spool of the killed capturer was not registered"
        assert "recovered" in caplog.text
    # Every commit the killed capturer copied is restorable to its instant.
    instants = sorted({t for r in chain for _, t in r.commits if to_us(full.finished_at) <= t <= to_us(killed_at)})
    assert instants
    rng = random.Random(seed)
    picks = sorted(set(rng.sample(instants, min(2, len(instants))) + [instants[-1]] + _overlaps(sets, instants)))
    seen = sorted({t for r in chain for _, t in r.commits})
    for n, t in enumerate(picks):
        _exact(manager, writer, seen, from_us(t), tmp_path / f"b{n}")
    # After the kill: the newest instant holds every commit; one in the window nobody
    # captured restores exactly or is refused (the WAL may have restarted in it).
    assert _exact(manager, writer, seen, clock(), tmp_path / "after") == len(writer.log)
    gap = from_us(instants[-1]) + (killed_at - from_us(instants[-1])) / 2
    try:
        _exact(manager, writer, seen, gap, tmp_path / "gap")
    except NoRecoveryPath:
        pass


def test_a_torn_tail_left_by_a_kill_is_cut_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A frame half written when the capturer died (a kill during a tick's write): the
    frame checksums find it, the spool is cut at its offset and says so."""
    clock, manager, writer = _setup(tmp_path, 3)
    try:
        _run_child(tmp_path, manager, "synced", 2, 60.0, 3)
        spool = tmp_path / "repo" / ".capture-shop.spool"
        last = max((p for p in spool.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        size = last.stat().st_size
        with open(last, "ab") as fh:
            fh.write(last.read_bytes()[HEADER_LEN : HEADER_LEN + 3000])  # a frame cut short
        with caplog.at_level(logging.WARNING, logger="rustybackup"):
            _capture_for(manager, 0.3, writer)
    finally:
        writer.stop.set()
        writer.join()
    assert f"{last}: cut at offset {size}" in caplog.text
    chain = [r for _, wal in _records(manager) for r in wal.chain]
    seen = sorted({t for r in chain for _, t in r.commits})
    assert _exact(manager, writer, seen, clock(), tmp_path / "r") == len(writer.log)
