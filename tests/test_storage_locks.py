"""Lock objects (rust/src/storage/locks.rs, python/rustybackup/remote_locks.py) on a real
S3 server and a local directory: conflicts name the holder, refresh extends the expiry, a
stale lock is taken over only after it expired, and racing lockers agree on one winner."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rustybackup import _core, locks
from rustybackup.errors import RepositoryLocked, StorageError
from s3_support import (
    SeaweedFS,
)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_core.ObjectStore]:
    if request.param == "local":
        yield _core.ObjectStore(str(tmp_path))
    else:
        server: SeaweedFS = request.getfixturevalue("s3_server")
        yield _core.ObjectStore(server.url(request.getfixturevalue("s3_prefix")), server.options())


def write_foreign_lock(store: _core.ObjectStore, purpose: str, expires: datetime, host: str = "other-host") -> str:
    """A lock object as another process would have left it (that process is not running)."""
    lock_id = str(uuid.uuid4())
    created = expires - timedelta(seconds=30)
    body = {
        "version": 1,
        "id": lock_id,
        "host": host,
        "pid": 4242,
        "purpose": purpose,
        "created": created.isoformat().replace("+00:00", "Z"),
        "expires": expires.isoformat().replace("+00:00", "Z"),
    }
    key = f"locks/{lock_id}.json"
    store.put_bytes(key, json.dumps(body).encode())
    return key


def wait_until(when: datetime) -> None:
    while datetime.now(UTC) <= when:
        time.sleep(0.05)


def test_lock_object_names_holder_and_is_released(store: _core.ObjectStore) -> None:
    with locks.remote_lock(store, "exclusive", ttl_seconds=60) as lk:
        info = lk.info
        assert lk.key == f"locks/{info.id}.json"
        assert info.purpose == "exclusive" and info.pid > 0 and info.host
        assert info.created < info.expires <= datetime.now(UTC) + timedelta(seconds=61)
        assert [x.key for x in locks.live_locks(store)] == [lk.key]
        body = json.loads(store.get_bytes(lk.key))
        assert body["host"] == info.host and body["purpose"] == "exclusive"
    assert store.list_locks() == []
    lk.release()  # idempotent


def test_conflicts_name_the_holder(store: _core.ObjectStore) -> None:
    held = store.lock("exclusive", 60, host="host-a", pid=111)
    try:
        with pytest.raises(RepositoryLocked, match="exclusive lock .* held by host-a pid 111"):
            store.lock("shared", 60)
        with pytest.raises(RepositoryLocked, match="host-a"):
            store.lock("exclusive", 60)
        with pytest.raises(RepositoryLocked, match="host-a"):
            locks.check_unlocked(store)
        locks.check_unlocked(store, own=held)
    finally:
        held.release()
    s1 = store.lock("shared", 60)
    s2 = store.lock("shared", 60)  # shared locks coexist
    with pytest.raises(RepositoryLocked, match="shared lock"):
        store.lock("exclusive", 60)
    s1.release()
    s2.release()
    store.lock("exclusive", 60).release()


def test_refresher_keeps_the_lock_alive(store: _core.ObjectStore) -> None:
    lk = store.lock("exclusive", 1.5)
    try:
        first = lk.info.expires
        wait_until(first + timedelta(seconds=1))
        # Past its first expiry, but refreshed in the background: still live and in force.
        stored = {x.key: x for x in store.list_locks()}[lk.key]
        assert stored.expires > first
        assert stored.live()
        with pytest.raises(RepositoryLocked):
            store.lock("shared", 10)
        assert lk.lost is None
        before = lk.info.expires
        lk.refresh()
        assert lk.info.expires >= before
    finally:
        lk.release()


def test_stale_lock_is_taken_over_only_after_expiry(store: _core.ObjectStore) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=2)
    key = write_foreign_lock(store, "exclusive", expires)
    with pytest.raises(RepositoryLocked, match="other-host pid 4242"):
        store.lock("shared", 60)
    assert store.head(key) is not None  # a live lock is never touched
    wait_until(expires)
    with store.lock("shared", 60) as lk:
        assert store.head(key) is None  # the stale one was taken over
        assert [x.key for x in store.list_locks()] == [lk.key]


def test_a_taken_over_lock_reports_itself_lost(store: _core.ObjectStore) -> None:
    lk = store.lock("exclusive", 60)
    store.delete(lk.key)  # what a takeover after expiry does
    with pytest.raises(RepositoryLocked, match="was removed"):
        lk.refresh()
    assert lk.lost is not None and "removed" in lk.lost
    lk.release()


def lock_race(store: _core.ObjectStore, lockers: int) -> tuple[list[_core.RemoteLock], list[str]]:
    """`lockers` threads take an exclusive lock at once: (locks held, refusals)."""
    barrier = threading.Barrier(lockers)
    held: list[_core.RemoteLock] = []
    refused: list[str] = []
    other: list[BaseException] = []

    def take() -> None:
        barrier.wait()
        try:
            held.append(store.lock("exclusive", 60))
        except RepositoryLocked as e:
            refused.append(str(e))
        except BaseException as e:  # noqa: BLE001 - reported below
            other.append(e)

    threads = [threading.Thread(target=take) for _ in range(lockers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    return held, refused


def test_racing_exclusive_lockers_agree_on_at_most_one(store: _core.ObjectStore) -> None:
    for _ in range(3):
        held, refused = lock_race(store, 3)
        # Never two; losers back off and delete their objects (all may back off at once).
        assert len(held) <= 1 and len(held) + len(refused) == 3
        assert [x.key for x in store.list_locks()] == [h.key for h in held]
        for h in held:
            h.release()


def test_damaged_lock_object_is_an_error_naming_it(store: _core.ObjectStore) -> None:
    store.put_bytes("locks/bad.json", b'{"version": 1, "id": "x"}')
    with pytest.raises(StorageError, match="locks/bad.json"):
        store.list_locks()
    with pytest.raises(StorageError, match="locks/bad.json"):
        store.lock("shared", 60)


def test_bad_arguments(store: _core.ObjectStore) -> None:
    with pytest.raises(ValueError, match="purpose"):
        store.lock("both", 60)
    with pytest.raises(ValueError, match="at least one second"):
        store.lock("shared", 0.5)
