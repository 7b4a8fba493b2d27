"""locks.py: the staging lock, the readers' locks (one listing tells who reads what) and
the scheduler's lease keeper. Sequenced with events and pipes, never with sleeps."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from rustybackup import CatalogError, locks

A = "20260101T000000000000Z-0000000a"
B = "20260101T000000000000Z-0000000b"

# --- the staging lock --------------------------------------------------------------------


def test_a_held_staging_lock_is_seen_from_another_descriptor(tmp_path: Path) -> None:
    d = tmp_path / "staging" / A
    d.mkdir(parents=True)
    fd = locks.hold_staging_lock(d)
    try:
        assert (d / locks.STAGING_LOCK).exists()
        assert not (d / (locks.STAGING_LOCK + ".new")).exists()
        os.utime(d, (0, 0))  # old: only the lock can keep it
        assert locks.is_staging_locked(d)
    finally:
        os.close(fd)
    assert not locks.is_staging_locked(d)


def test_a_directory_without_a_lock_is_busy_only_while_a_backup_is_creating_one(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    d = root / "staging" / "new"
    d.mkdir(parents=True)
    assert not locks.is_staging_locked(d)  # nobody is creating: a leftover, however young
    with locks.creating_staging(root):
        assert locks.is_staging_locked(d)  # may be the one being born
        # Another process sees the same: the creation lock is a flock, not in-process state.
        probe = "import sys; from pathlib import Path; from rustybackup import locks; "
        probe += "sys.exit(0 if locks.is_staging_locked(Path(sys.argv[1])) else 1)"
        assert subprocess.run([sys.executable, "-c", probe, str(d)], check=False).returncode == 0
    assert not locks.is_staging_locked(d)
    assert not locks.is_staging_locked(root / "staging" / "absent")


def test_dropping_the_lock_file_keeps_the_lock_until_closed(tmp_path: Path) -> None:
    d = tmp_path / "set"
    d.mkdir()
    fd = locks.hold_staging_lock(d)
    locks.drop_staging_lock_file(d)
    locks.drop_staging_lock_file(d)  # twice is harmless
    assert not (d / locks.STAGING_LOCK).exists()
    os.close(fd)


def test_a_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    d = tmp_path / "set"
    d.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (d / (locks.STAGING_LOCK + ".new")).symlink_to(victim)
    with pytest.raises(OSError):
        locks.hold_staging_lock(d)
    assert victim.read_text() == "keep"


# --- the readers' locks ------------------------------------------------------------------


def test_a_reader_is_listed_while_it_reads_and_its_file_goes_after(tmp_path: Path) -> None:
    readers = locks.ReaderLocks(tmp_path)
    assert readers.being_read() == set()
    with readers.reading([A, A]):
        assert readers.being_read() == {A}
        assert sorted(os.listdir(tmp_path / locks.READERS_DIR)) == [A]
    assert readers.being_read() == set()
    assert os.listdir(tmp_path / locks.READERS_DIR) == []


def test_two_readers_of_one_set_share_it_and_the_last_one_cleans_up(tmp_path: Path) -> None:
    readers = locks.ReaderLocks(tmp_path)
    with readers.reading([A]):
        with readers.reading([A, B]):
            assert readers.being_read() == {A, B}
        assert readers.being_read() == {A}
    assert readers.being_read() == set()


def test_delete_is_refused_under_a_reader_and_allowed_after(tmp_path: Path) -> None:
    readers = locks.ReaderLocks(tmp_path)
    with readers.reading([A]):
        with pytest.raises(CatalogError, match=f"backup set {A} is being read"), readers.deleting(A):
            pytest.fail("entered a delete under a reader")
        with readers.deleting(B):
            # A set in the middle of a delete is held too: a retention plan leaves it alone.
            assert readers.being_read() == {A, B}
    with readers.deleting(A):
        pass
    assert os.listdir(tmp_path / locks.READERS_DIR) == [locks.GATE]


def test_a_crashed_readers_file_is_not_taken_for_a_reader(tmp_path: Path) -> None:
    readers = locks.ReaderLocks(tmp_path)
    (tmp_path / locks.READERS_DIR).mkdir()
    (tmp_path / locks.READERS_DIR / A).touch()  # left by a kill -9: nobody holds it
    (tmp_path / locks.READERS_DIR / "not-an-id").touch()
    assert readers.being_read(lambda name: name != "not-an-id") == set()
    assert sorted(os.listdir(tmp_path / locks.READERS_DIR)) == ["not-an-id"]


@contextmanager
def _reading_in_child(root: Path, ids: list[str]) -> Iterator[None]:
    """Another process holds reader locks on `ids` in `root` for the block's length."""
    code = (
        "import sys; from pathlib import Path; from rustybackup.locks import ReaderLocks\n"
        f"with ReaderLocks(Path({str(root)!r})).reading({ids!r}):\n"
        "    print('reading', flush=True); sys.stdin.readline()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        try:
            assert child.stdout.readline().strip() == "reading"
            yield
        finally:
            child.stdin.write("\n")
            child.stdin.close()
            assert child.wait(timeout=60) == 0


def test_a_reader_in_another_process_is_seen_and_blocks_delete(tmp_path: Path) -> None:
    with _reading_in_child(tmp_path, [A]):
        readers = locks.ReaderLocks(tmp_path)
        assert readers.being_read() == {A}
        with pytest.raises(locks.SetBusy), readers.deleting(A):
            pass
    assert locks.ReaderLocks(tmp_path).being_read() == set()


def test_a_reader_whose_file_was_removed_while_it_waited_locks_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers = locks.ReaderLocks(tmp_path)
    about_to_lock = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, how: int) -> None:
        if how == fcntl.LOCK_SH and threading.current_thread().name == "reader":
            about_to_lock.set()
        real_flock(fd, how)

    monkeypatch.setattr(fcntl, "flock", flock)
    inside = threading.Event()
    leave = threading.Event()

    def read() -> None:
        with readers.reading([A]):
            inside.set()
            leave.wait(60)

    with readers.deleting(A):
        reader = threading.Thread(target=read, name="reader")
        reader.start()
        # The reader has opened the file the deleter holds and now waits for it.
        assert about_to_lock.wait(60)
    # The deleter removed that file on the way out; the reader must hold a listed one.
    assert inside.wait(60)
    try:
        assert readers.being_read() == {A}
        with pytest.raises(locks.SetBusy), readers.deleting(A):
            pass
    finally:
        leave.set()
        reader.join(60)
    assert readers.being_read() == set()


def _many(n: int) -> list[str]:
    return [f"20260101T000000000000Z-{i:08x}" for i in range(16, 16 + n)]


def test_a_read_of_many_sets_is_one_bulk_file_that_listing_and_delete_both_see(tmp_path: Path) -> None:
    readers = locks.ReaderLocks(tmp_path)
    many = [A, *_many(locks.BULK_AT)]
    with readers.reading(many):
        names = os.listdir(tmp_path / locks.READERS_DIR)
        assert len(names) == 2 and locks.GATE in names  # one file, not one per set
        assert readers.being_read() == set(many)
        with pytest.raises(locks.SetBusy, match=f"backup set {A} is being read"), readers.deleting(A):
            pytest.fail("entered a delete under a bulk reader")
        with readers.deleting(B):  # not in the bulk read
            pass
        with readers.reading([A]):  # a small reader beside it
            assert readers.being_read() == set(many)
    assert readers.being_read() == set()
    assert os.listdir(tmp_path / locks.READERS_DIR) == [locks.GATE]
    with readers.deleting(A):
        pass


def test_a_crashed_bulk_readers_file_is_ignored_and_removed(tmp_path: Path) -> None:
    readers = locks.ReaderLocks(tmp_path)
    (tmp_path / locks.READERS_DIR).mkdir()
    stale = tmp_path / locks.READERS_DIR / f"{locks.BULK_PREFIX}1-deadbeef"
    stale.write_text(f"{A}\n{B}\n")  # nobody holds it
    with readers.deleting(A):
        pass
    assert not stale.exists()
    stale.write_text(f"{A}\n")
    assert readers.being_read() == set()
    assert not stale.exists()


def test_a_bulk_reader_in_another_process_blocks_delete_of_its_sets(tmp_path: Path) -> None:
    many = [A, *_many(locks.BULK_AT)]
    with _reading_in_child(tmp_path, many):
        readers = locks.ReaderLocks(tmp_path)
        assert readers.being_read() == set(many)
        with pytest.raises(locks.SetBusy), readers.deleting(many[-1]):
            pass
    assert locks.ReaderLocks(tmp_path).being_read() == set()


class ReadersMachine(RuleBasedStateMachine):
    """Readers come and go in any order; the listing always names exactly the sets with
    at least one reader (the oracle: a counter)."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="rb-locks-"))
        self.readers = locks.ReaderLocks(self.dir)
        self.open: list[tuple[ExitStack, list[str]]] = []
        self.count: Counter[str] = Counter()

    @rule(ids=st.lists(st.sampled_from([A, B, "20260101T000000000000Z-0000000c"]), min_size=1, max_size=3))
    def start(self, ids: list[str]) -> None:
        stack = ExitStack()
        stack.enter_context(self.readers.reading(ids))
        unique = list(dict.fromkeys(ids))
        self.open.append((stack, unique))
        self.count.update(unique)

    @rule(first=st.sampled_from([A, B]))
    def start_bulk(self, first: str) -> None:
        ids = [first, *_many(locks.BULK_AT)]
        stack = ExitStack()
        stack.enter_context(self.readers.reading(ids))
        self.open.append((stack, ids))
        self.count.update(ids)

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        if not self.open:
            return
        stack, ids = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
        stack.close()
        self.count.subtract(ids)

    @rule(set_id=st.sampled_from([A, B]))
    def try_delete(self, set_id: str) -> None:
        try:
            with self.readers.deleting(set_id):
                assert self.count[set_id] == 0
        except locks.SetBusy:
            assert self.count[set_id] > 0

    @invariant()
    def listing_matches(self) -> None:
        assert self.readers.being_read() == {k for k, v in self.count.items() if v > 0}

    def teardown(self) -> None:
        for stack, _ in self.open:
            stack.close()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


ReadersMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
test_readers_listing_matches_the_oracle = ReadersMachine.TestCase


# --- the lease keeper --------------------------------------------------------------------


def test_the_lease_keeper_renews_active_leases_and_survives_a_failed_renewal() -> None:
    calls: list[str] = []
    renewed_after_failure = threading.Event()

    def renew(lease_id: str) -> None:
        calls.append(lease_id)
        if len(calls) == 1:
            raise CatalogError("database is locked")
        renewed_after_failure.set()

    keeper = locks.LeaseKeeper(renew, period=0.01)
    keeper.start("run-1")
    assert keeper.active() == ["run-1"]
    assert renewed_after_failure.wait(60)
    keeper.stop("run-1")
    assert keeper.active() == []
    assert set(calls) == {"run-1"} and len(calls) >= 2
    thread = keeper._thread
    if thread is not None:
        thread.join(60)
        assert not thread.is_alive()
