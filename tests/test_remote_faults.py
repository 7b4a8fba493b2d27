"""A remote repository when the server goes away: killed in the middle of an upload (no
visible set, the next backup works and the leftovers are swept), and restarted between
two backups. Each test runs its own SeaweedFS, since it kills it."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from engine_support import SimClock, snapshot_tree
from rustybackup import BackupManager, RustyBackupError
from rustybackup.upload_limits import UploadSchedule
from s3_support import SeaweedFS, own_seaweedfs

MiB = 1 << 20


own_server = pytest.fixture(own_seaweedfs)


def _source(root: Path, mib: int) -> Path:
    root.mkdir()
    rnd = random.Random(11)
    for i in range(4):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(mib * MiB // 4))
    return root


def _restart(server: SeaweedFS) -> None:
    """Starts the server again and waits (bounded) until it stores and serves an object:
    after a restart SeaweedFS answers listings before its volumes take writes."""
    server.start()
    client = server.client()
    deadline = time.monotonic() + 60
    while True:
        try:
            client.put(server.bucket, "probe/ready", b"x")
            if client.get(server.bucket, "probe/ready") == b"x":
                client.request("DELETE", f"/{server.bucket}/probe/ready")
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"SeaweedFS did not take writes after a restart:\n{server.log_tail()}")
        time.sleep(0.3)


def _objects(server: SeaweedFS, prefix: str) -> dict[str, int]:
    keys = server.client().list_keys(server.bucket, prefix + "/")
    return {k[len(prefix) + 1 :]: v for k, v in keys.items()}


def test_server_killed_mid_upload_leaves_no_set_and_the_next_backup_sweeps(
    own_server: SeaweedFS, tmp_path: Path
) -> None:
    src = _source(tmp_path / "src", 40)
    prefix = "killed"
    m = BackupManager(own_server.url(prefix), clock=SimClock())
    m.register_database("db", src)
    # Slow uploads (4 MiB/s all day) so that the kill lands in the middle of one.
    m.upload_limits = UploadSchedule.parse(["4MiB/s@00:00-00:00"])
    failure: list[BaseException] = []

    def run() -> None:
        try:
            m.backup("db", "full")
        except BaseException as exc:  # noqa: BLE001 - inspected below
            failure.append(exc)

    t = threading.Thread(target=run)
    t.start()
    client = own_server.client()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and t.is_alive():
        uploads = client.list_multipart_uploads(own_server.bucket, prefix + "/sets/")
        if uploads or any("/sets/" in k for k in client.list_keys(own_server.bucket, prefix + "/")):
            break
        time.sleep(0.05)
    own_server.kill()
    t.join(timeout=300)
    assert not t.is_alive(), "the backup did not give up on a dead server"
    assert len(failure) == 1 and isinstance(failure[0], RustyBackupError), failure
    assert m.catalog.set_ids() == set()
    # The finished set stays staged for the next backup to upload (resume_upload.py).
    (kept,) = (m.repository / "staging").iterdir()
    _restart(own_server)
    assert not any(k.endswith("manifest.json") for k in _objects(own_server, prefix))
    # The next backup works (no limit now), uploading the kept set first, and a cleanup
    # past the grace period removes what the cut upload left.
    m.upload_limits = None
    s = m.backup("db", "full")
    assert m.remote is not None
    # The cleanup is skipped while the dead backup's lock is live, then runs.
    deadline = time.monotonic() + 60
    while not m.remote.cleanup(m.catalog.tombstones(), grace_seconds=0) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _objects(own_server, prefix)
    assert {k.split("/")[1] for k in left if k.startswith("sets/")} == {kept.name, s.id}
    assert m.catalog.set_ids() == {kept.name, s.id}
    assert not client.list_multipart_uploads(own_server.bucket, prefix + "/")
    m.restore("db", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(src, with_meta=False)


def test_server_restarted_between_two_backups(own_server: SeaweedFS, tmp_path: Path) -> None:
    src = _source(tmp_path / "src", 2)
    clock = SimClock()
    url = own_server.url("restarted")
    m = BackupManager(url, clock=clock)
    m.register_database("db", src, block_size=4096)
    full = m.backup("db", "full")
    own_server.stop()
    _restart(own_server)
    with open(src / "f1.bin", "r+b") as fh:
        fh.seek(5000)
        fh.write(os.urandom(3000))
    clock.advance(hours=1)
    inc = m.backup("db", "incremental")
    assert inc.parent_id == full.id
    again = BackupManager(url, clock=clock)
    assert again.catalog.set_ids() == {full.id, inc.id}
    again.restore("db", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(src, with_meta=False)


def test_slow_responses_and_a_cut_connection_are_retried(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3_fault_proxy import FaultProxy

    src = _source(tmp_path / "src", 12)
    with FaultProxy(s3_server.s3_port) as proxy:
        for k, v in s3_server.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        m = BackupManager(s3_server.url(s3_prefix), clock=SimClock())
        m.register_database("db", src)
        proxy.delay_responses(0.5, connections=8)
        proxy.cut_after(3 * MiB, connections=1)
        s = m.backup("db", "full")
        proxy.delay_responses(0.5, connections=8)
        m.restore("db", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(src, with_meta=False)
    keys = _objects(s3_server, s3_prefix)
    assert keys[f"sets/{s.id}/data.piece"] == s.pieces[0].size
