"""A backup to a remote repository whose upload is cut after its pass finished keeps
its staged set, and the next backup of that database uploads it first (resume_upload.py)
without reading the source again; a kept set damaged meanwhile is discarded. Each test
runs its own SeaweedFS, since it kills it."""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

import pytest
from engine_support import SimClock, snapshot_tree
from rustybackup import BackupManager, RustyBackupError, resume_upload, store
from rustybackup.upload_limits import UploadSchedule
from s3_support import SeaweedFS, own_seaweedfs
from test_remote_faults import _restart

MiB = 1 << 20


own_server = pytest.fixture(own_seaweedfs)


def _source(root: Path) -> Path:
    root.mkdir()
    rnd = random.Random(19)
    for i in range(4):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(4 * MiB))
    return root


def _remote(server: SeaweedFS, tmp_path: Path, prefix: str) -> tuple[Path, SimClock, str, BackupManager]:
    """The source (``tmp_path/src``), a clock, and the URL and a manager of the bucket's
    repository under `prefix`, the source registered in it as "db"."""
    src = _source(tmp_path / "src")
    clock = SimClock()
    url = server.url(prefix)
    m = BackupManager(url, clock=clock)
    m.register_database("db", src)
    return src, clock, url, m


def _restores_the_source(m: BackupManager, src: Path, out: Path, set_id: str | None = None) -> None:
    m.restore("db", out, backup_set_id=set_id)
    assert snapshot_tree(out, with_meta=False) == snapshot_tree(src, with_meta=False)


def _cut_full(server: SeaweedFS, m: BackupManager, prefix: str, btype: str = "full") -> Path:
    """A backup (FULL by default) whose upload the server's death cuts; returns the kept
    staging directory."""
    m.upload_limits = UploadSchedule.parse(["2MiB/s@00:00-00:00"])
    failure: list[BaseException] = []

    def run() -> None:
        try:
            m.backup("db", btype)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            failure.append(exc)

    client = server.client()
    old = set(client.list_keys(server.bucket, prefix + "/sets/"))
    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and t.is_alive():
        # The first object (or part) of the new set: its pass has finished.
        if client.list_multipart_uploads(server.bucket, prefix + "/sets/") or (
            set(client.list_keys(server.bucket, prefix + "/sets/")) - old
        ):
            break
        time.sleep(0.05)
    assert t.is_alive(), f"the upload finished before the server was killed: {failure}"
    server.kill()
    t.join(timeout=300)
    assert not t.is_alive(), "the backup did not give up on a dead server"
    assert len(failure) == 1 and isinstance(failure[0], RustyBackupError), failure
    before = m.catalog.set_ids()
    kept = list((m.repository / store.STAGING_DIR).iterdir())
    assert len(kept) == 1 and resume_upload.pending(kept[0]) == "db"
    assert (kept[0] / store.MANIFEST).is_file()
    assert kept[0].name not in before
    _restart(server)
    m.upload_limits = None
    return kept[0]


def test_cut_upload_is_finished_by_the_next_backup_without_reading_again(
    own_server: SeaweedFS, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = "cutupload"
    src, clock, _, m = _remote(own_server, tmp_path, prefix)
    kept = _cut_full(own_server, m, prefix)
    kept_id = kept.name
    # What the cut upload got across, made definite: every staged object but the piece is
    # in the bucket whole, the piece cut short (a wrong size: it must be sent again).
    client = own_server.client()
    whole = sorted(p for p in kept.iterdir() if not p.name.startswith(".") and p.name != store.MANIFEST)
    assert {store.PIECE, store.BLOCKMAP} <= {p.name for p in whole}
    for p in whole:
        data = p.read_bytes()
        client.put(own_server.bucket, f"{prefix}/sets/{kept_id}/{p.name}", data[:-1] if p.name == store.PIECE else data)
    clock.advance(hours=1)
    caplog.set_level(logging.INFO, logger="rustybackup")
    inc = m.backup("db", "incremental")
    sent = [r.getMessage() for r in caplog.records if "kept set uploaded" in r.getMessage()]
    assert sent == [
        f"backup {kept_id} of db: its kept set uploaded ({len(whole) - 1} object(s) already there) and registered"
    ]
    # The kept FULL is registered as it was read (16 MiB), and the INCREMENTAL built on
    # it read nothing: no file changed, so the source was not read a second time.
    full = m.catalog.get_set(kept_id)
    assert full.bytes_read == 16 * MiB
    assert inc.parent_id == kept_id
    assert inc.bytes_read == 0
    assert not (m.repository / store.STAGING_DIR / kept_id).exists()
    # Another host (its own cache) sees both sets and restores the tree byte for byte.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-cache"))
    other = BackupManager(own_server.url(prefix), clock=clock)
    assert {kept_id, inc.id} <= other.catalog.set_ids()
    _restores_the_source(other, src, tmp_path / "out", kept_id)


def test_damaged_kept_set_is_discarded_with_the_reason(
    own_server: SeaweedFS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = "damagedkept"
    src, clock, _, m = _remote(own_server, tmp_path, prefix)
    kept = _cut_full(own_server, m, prefix)
    with open(kept / store.PIECE, "r+b") as fh:
        fh.seek(5000)
        b = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([b[0] ^ 0xFF]))
    clock.advance(hours=1)
    caplog.set_level(logging.INFO, logger="rustybackup")
    s = m.backup("db", "incremental")  # promoted to FULL: the kept set never became one
    assert any("discarding the staged set" in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
    assert not kept.exists()
    assert m.catalog.set_ids() == {s.id}
    assert s.parent_id is None and s.bytes_read == 16 * MiB
    _restores_the_source(m, src, tmp_path / "out")


def test_kept_set_whose_parent_left_the_bucket_is_discarded(
    own_server: SeaweedFS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = "orphankept"
    src, clock, url, m = _remote(own_server, tmp_path, prefix)
    full = m.backup("db", "full")
    rnd = random.Random(7)
    for f in sorted(src.iterdir()):
        f.write_bytes(rnd.randbytes(4 * MiB))
    clock.advance(hours=1)
    kept = _cut_full(own_server, m, prefix, "incremental")
    assert resume_upload.pending(kept) == "db"
    # Another host's retention removed the FULL the kept INCREMENTAL builds on.
    client = own_server.client()
    for key in sorted(client.list_keys(own_server.bucket, f"{prefix}/sets/{full.id}/"), reverse=True):
        client.request("DELETE", f"/{own_server.bucket}/{key}")
    clock.advance(hours=1)
    caplog.set_level(logging.INFO, logger="rustybackup")
    again = BackupManager(url, clock=clock)
    s = again.backup("db", "incremental")
    assert any(
        "discarding the staged set" in r.getMessage() and f"parent set {full.id} is gone" in r.getMessage()
        for r in caplog.records
    )
    assert not kept.exists()
    assert kept.name not in again.catalog.set_ids()
    assert s.parent_id is None
    _restores_the_source(again, src, tmp_path / "out")


def test_kept_set_whose_manifest_reached_the_bucket_is_not_registered_twice(
    own_server: SeaweedFS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = "lostreply"
    src, clock, url, m = _remote(own_server, tmp_path, prefix)
    kept = _cut_full(own_server, m, prefix)
    # The whole set did get across; only the reply to the manifest's request was lost.
    client = own_server.client()
    for p in sorted(kept.iterdir(), key=lambda p: p.name == store.MANIFEST):
        if not p.name.startswith("."):
            client.put(own_server.bucket, f"{prefix}/sets/{kept.name}/{p.name}", p.read_bytes())
    clock.advance(hours=1)
    caplog.set_level(logging.INFO, logger="rustybackup")
    again = BackupManager(url, clock=clock)
    assert kept.name in again.catalog.set_ids()
    inc = again.backup("db", "incremental")
    assert any("already registered from the bucket" in r.getMessage() for r in caplog.records)
    assert not kept.exists()
    assert inc.parent_id == kept.name and inc.bytes_read == 0
    _restores_the_source(again, src, tmp_path / "out")
