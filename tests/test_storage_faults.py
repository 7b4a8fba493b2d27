"""Faults between the storage layer and a real SeaweedFS: connections cut mid-request,
slow responses, a request byte flipped in transit, and the server killed in the middle of
a set's upload (no set becomes visible; after a restart the leftovers are swept and the
next upload works)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rustybackup import _core
from rustybackup.errors import StorageError, StorageUnreachable
from s3_fault_proxy import FaultProxy
from s3_support import (
    SeaweedFS,
    start_seaweedfs,
)

MiB = 1 << 20


@pytest.fixture
def proxy(s3_server: SeaweedFS) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.s3_port) as p:
        yield p


def through(server: SeaweedFS, proxy: FaultProxy, prefix: str, **extra: str) -> _core.ObjectStore:
    opts = {**server.options(), "aws_endpoint_url": proxy.endpoint, "part_size": str(5 * MiB), **extra}
    return _core.ObjectStore(server.url(prefix), opts)


def random_file(path: Path, size: int) -> str:
    data = hashlib.shake_256(str(size).encode()).digest(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_cut_connections_are_retried(s3_server: SeaweedFS, s3_prefix: str, proxy: FaultProxy, tmp_path: Path) -> None:
    store = through(s3_server, proxy, s3_prefix)
    src = tmp_path / "f"
    digest = random_file(src, 12 * MiB + 5)
    proxy.cut_after(1 * MiB, connections=2)
    assert store.put_file("sets/a/data.piece", src) == 12 * MiB + 5
    assert proxy.faults_fired == 2
    got = s3_server.client().get(s3_server.bucket, f"{s3_prefix}/sets/a/data.piece")
    assert got is not None and hashlib.sha256(got).hexdigest() == digest
    # Reads are retried too.
    proxy.cut_after(300, connections=1)
    assert hashlib.sha256(store.get_bytes("sets/a/data.piece")).hexdigest() == digest


def test_slow_responses_still_complete(s3_server: SeaweedFS, s3_prefix: str, proxy: FaultProxy, tmp_path: Path) -> None:
    store = through(s3_server, proxy, s3_prefix)
    proxy.delay_responses(0.3, connections=4)
    store.put_bytes("slow", b"x" * 100_000)
    dst = tmp_path / "out"
    assert store.get_to_file("slow", dst) == 100_000
    assert dst.read_bytes() == b"x" * 100_000


def test_a_byte_damaged_in_transit_is_refused(
    s3_server: SeaweedFS, s3_prefix: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The body's SHA-256 travels with it (x-amz-checksum-sha256 and the signed payload
    hash); the server recomputes it and refuses the write (a 400, which is not retried:
    the request was refused, not lost), so nothing damaged is stored."""
    store = through(s3_server, proxy, s3_prefix)
    data = bytes(range(256)) * 400
    # Well past the request line and headers (under 2 KiB), inside the body.
    proxy.flip_byte(60_000, connections=1)
    with pytest.raises(StorageError):
        store.put_bytes("damaged", data)
    assert proxy.faults_fired == 1
    assert s3_server.client().get(s3_server.bucket, f"{s3_prefix}/damaged") is None
    store.put_bytes("damaged", data)
    assert s3_server.client().get(s3_server.bucket, f"{s3_prefix}/damaged") == data


def test_server_killed_mid_upload_leaves_no_set(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="rustybackup-s3-kill-"))
    server = start_seaweedfs(root)
    try:
        staged = tmp_path / "s"
        staged.mkdir()
        random_file(staged / "data.piece", 96 * MiB)
        (staged / "blockmap").write_bytes(b"map")
        (staged / "manifest.json").write_bytes(b'{"id": "s"}')
        with FaultProxy(server.s3_port) as proxy:
            store = through(server, proxy, "repo", retry_timeout="3", parts_in_flight="2")
            outcome: list[BaseException | None] = []

            def upload() -> None:
                try:
                    store.upload_set(staged, "sets/s")
                    outcome.append(None)
                except BaseException as e:  # noqa: BLE001 - checked below
                    outcome.append(e)

            t = threading.Thread(target=upload)
            t.start()
            deadline = time.monotonic() + 120
            while proxy.request_bytes < 20 * MiB and not outcome:
                assert time.monotonic() < deadline, "the upload never got going"
                time.sleep(0.01)
            server.kill()
            t.join(timeout=180)
            assert not t.is_alive()
            assert len(outcome) == 1 and isinstance(outcome[0], StorageUnreachable), outcome

            server.start()
            direct = _core.ObjectStore(server.url("repo"), server.options())
            assert direct.head("sets/s/manifest.json") is None
            assert "repo/sets/s/manifest.json" not in server.client().list_keys(server.bucket, "repo/")
            # The next run cleans up: abandoned multipart uploads, then unreferenced objects.
            later = datetime.now(UTC) + timedelta(hours=7)
            direct.sweep_uploads("sets", 6 * 3600, now=later)
            assert server.client().list_multipart_uploads(server.bucket, "repo/") == []
            direct.sweep("sets", 6 * 3600, now=later)
            assert direct.list("sets") == []
            # And the next upload works.
            up = direct.upload_set(staged, "sets/s")
            assert up.created
            assert direct.head("sets/s/data.piece") is not None
            assert direct.get_bytes("sets/s/manifest.json") == b'{"id": "s"}'
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_server_restarted_between_operations(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="rustybackup-s3-restart-"))
    server = start_seaweedfs(root)
    try:
        store = _core.ObjectStore(server.url("r"), {**server.options(), "retry_timeout": "30"})
        store.put_bytes("a", b"1")
        server.stop()
        server.start()
        # The same handle (pooled connections now dead) reconnects.
        assert store.get_bytes("a") == b"1"
        store.put_bytes("b", b"2")
        assert [m.key for m in store.list()] == ["a", "b"]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
