"""A remote backup sends its piece while writing it (storage/tail.rs): the piece crosses
the network once, the set commits as before (manifest last) and restores byte for byte;
a file that is not a growing piece, or a tail cancelled midway, leaves no object."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path

import pytest
from engine_support import snapshot_tree
from rustybackup import BackupManager, _core
from s3_fault_proxy import FaultProxy
from s3_support import SeaweedFS, point_at

MiB = 1 << 20


@pytest.fixture
def s3_env(s3_server: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    return point_at(s3_server, monkeypatch, tmp_path / "cache", 5 * MiB)


def test_the_piece_goes_up_once_while_it_is_written(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(5)
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(rnd.randbytes(6 * MiB))
    with FaultProxy(s3_env.s3_port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        m = BackupManager(s3_env.url(s3_prefix))
        m.register_database("db", src)
        before = proxy.request_bytes
        full = m.backup("db", "full")
        sent = proxy.request_bytes - before
        m.restore("db", tmp_path / "out")
    piece = full.pieces[0].size
    keys = s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/")
    assert keys[f"{s3_prefix}/sets/{full.id}/data.piece"] == piece
    # Once, plus the block map, the manifest, locks and headers: not twice.
    assert piece < sent < piece + 2 * MiB
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(src, with_meta=False)


def test_a_file_that_is_not_a_piece_is_given_up_and_leaves_nothing(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path
) -> None:
    store = _core.ObjectStore(s3_env.url(s3_prefix), {"part_size": str(5 * MiB)})
    path = tmp_path / "data.piece"
    path.write_bytes(os.urandom(12 * MiB))
    tail = store.tail_upload("sets/x/data.piece", path)
    assert tail.finish(path.stat().st_size) is False
    assert tail.finish(path.stat().st_size) is False  # once only
    assert store.head("sets/x/data.piece") is None
    assert s3_env.client().list_multipart_uploads(s3_env.bucket, s3_prefix + "/") == []


def test_a_cancelled_tail_aborts_its_upload(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    store = _core.ObjectStore(s3_env.url(s3_prefix), {"part_size": str(5 * MiB)})
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as c:
        c.execute("create table t(x)")
        c.executemany("insert into t values (?)", [(os.urandom(400_000),) for _ in range(20)])
    c.close()
    # A real piece, so the tail starts sending parts while "writing" its first 6 MiB.
    local = BackupManager(tmp_path / "repo")
    local.register_database("db", db, kind="sqlite")
    s = local.backup("db", "full")
    assert s.pieces[0].size > 6 * MiB
    data = (local.repository / s.pieces[0].path).read_bytes()
    path = tmp_path / "growing.piece"
    tail = store.tail_upload("sets/y/data.piece", path)
    with open(path, "wb") as fh:
        fh.write(data[: 6 * MiB])
        fh.flush()
        deadline = time.monotonic() + 30
        while not s3_env.client().list_multipart_uploads(s3_env.bucket, s3_prefix + "/"):
            assert time.monotonic() < deadline, "the tail never started its upload"
            time.sleep(0.05)
    tail.cancel()
    assert store.head("sets/y/data.piece") is None
    assert s3_env.client().list_multipart_uploads(s3_env.bucket, s3_prefix + "/") == []


def test_a_piece_written_while_it_is_followed_arrives_whole(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    store = _core.ObjectStore(s3_env.url(s3_prefix), {"part_size": str(5 * MiB)})
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as c:
        c.execute("create table t(x)")
        c.executemany("insert into t values (?)", [(os.urandom(300_000),) for _ in range(45)])
    c.close()
    local = BackupManager(tmp_path / "repo")
    local.register_database("db", db, kind="sqlite")
    data = (local.repository / local.backup("db", "full").pieces[0].path).read_bytes()
    assert len(data) > 12 * MiB
    path = tmp_path / "growing.piece"
    tail = store.tail_upload("sets/z/data.piece", path)
    rnd = random.Random(1)
    with open(path, "wb") as fh:
        at = 0
        while at < len(data):
            n = rnd.randrange(1, 3 * MiB)
            fh.write(data[at : at + n])
            fh.flush()
            at += n
            time.sleep(0.02)
    assert tail.finish(len(data)) is True
    assert store.get_bytes("sets/z/data.piece") == data
