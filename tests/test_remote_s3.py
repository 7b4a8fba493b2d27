"""Remote repositories against a real S3 server (SeaweedFS, tests/s3_support.py): round
trips byte for byte, incremental chains, verification by listing and by streamed reads,
the local cache rebuilt from the bucket, two hosts sharing one bucket, wrong credentials,
a missing bucket, and copies between local and remote repositories."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from engine_support import SimClock, snapshot_tree
from rustybackup import BackupManager, CatalogError, RetentionPolicy, RustyBackupError, Verifier
from rustybackup.catalog import BackupSet
from rustybackup.copy import copy_sets
from rustybackup.mirrors import CopyStatus, copies
from s3_support import READONLY_ACCESS_KEY, READONLY_SECRET_KEY, SeaweedFS, point_at

MiB = 1 << 20


@pytest.fixture
def s3_env(s3_server: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    return point_at(s3_server, monkeypatch, tmp_path / "cache-host-a")


def _tree(root: Path, seed: int, files: int = 6, big: int = 0) -> None:
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    for i in range(files):
        where = root / ("sub" if i % 2 else ".") / f"f{i}.bin"
        where.write_bytes(rnd.randbytes(rnd.randrange(0, 200_000)))
    if big:
        (root / "big.bin").write_bytes(rnd.randbytes(big))


def _local_chain(
    tmp_path: Path, seed: int, changed: str, content: bytes
) -> tuple[SimClock, BackupManager, list[BackupSet]]:
    """The local repository ``tmp_path/local`` of the tree ``tmp_path/src`` (`_tree` of
    `seed`, 4 KiB blocks): a FULL, and an hour later an INCREMENTAL after `changed` was
    rewritten with `content`."""
    clock = SimClock()
    src = tmp_path / "src"
    _tree(src, seed)
    local = BackupManager(tmp_path / "local", clock=clock)
    local.register_database("db", src, block_size=4096)
    sets = [local.backup("db", "full")]
    clock.advance(hours=1)
    (src / changed).write_bytes(content)
    sets.append(local.backup("db", "incremental"))
    return clock, local, sets


def _keys(server: SeaweedFS, prefix: str) -> dict[str, int]:
    return {k[len(prefix) + 1 :]: v for k, v in server.client().list_keys(server.bucket, prefix + "/").items()}


def test_backup_restore_round_trip_and_incremental_chain(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    clock = SimClock()
    src = tmp_path / "src"
    # Larger than one multipart part: the piece goes up in several.
    _tree(src, 1, big=20 * MiB)
    url = s3_env.url(s3_prefix)
    m = BackupManager(url, clock=clock)
    assert m.remote is not None and str(m.remote.url) == url
    m.register_database("db", src, block_size=16384)
    sets = [m.backup("db", "full")]
    states = [snapshot_tree(src, with_meta=False)]
    for n in range(2):
        clock.advance(hours=1)
        (src / f"f{n}.bin").write_bytes(random.Random(100 + n).randbytes(50_000))
        with (src / "big.bin").open("r+b") as fh:
            fh.write(b"changed!" * (n + 1))
        sets.append(m.backup("db", "incremental"))
        states.append(snapshot_tree(src, with_meta=False))
    keys = _keys(s3_env, s3_prefix)
    for s in sets:
        # The set is in the bucket: manifest, piece and block map.
        assert {f"sets/{s.id}/manifest.json", f"sets/{s.id}/data.piece", f"sets/{s.id}/blockmap"} <= keys.keys()
        assert keys[f"sets/{s.id}/data.piece"] == s.pieces[0].size
        # ... and its piece is not kept in the cache once uploaded.
        assert not (m.repository / s.pieces[0].path).exists()
    assert sets[1].size < sets[0].size // 4
    for s, state in zip(sets, states, strict=True):
        out = tmp_path / f"restore-{s.id}"
        m.restore("db", out, backup_set_id=s.id)
        assert snapshot_tree(out, with_meta=False) == state


def test_verify_quick_standard_full_and_damage_found(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 2)
    m = BackupManager(s3_env.url(s3_prefix), clock=SimClock())
    m.register_database("db", src, block_size=4096)
    s = m.backup("db", "full")
    v = Verifier(m)
    for level in ("quick", "standard", "full"):
        r = v.verify("db", level)
        assert r.ok, (level, r.findings)
    assert v.verify("db", "quick").bytes_read == 0
    assert v.verify("db", "full").bytes_read >= s.pieces[0].size
    # Pieces fetched for a check do not stay in the cache.
    assert not (m.repository / s.pieces[0].path).exists()
    # One byte flipped in the stored piece: FULL names the block; QUICK (sizes) cannot see it.
    client = s3_env.client()
    key = f"{s3_prefix}/{s.pieces[0].path}"
    data = bytearray(client.get(s3_env.bucket, key) or b"")
    data[300] ^= 0x01
    client.put(s3_env.bucket, key, bytes(data))
    assert v.verify("db", "quick").ok
    full = v.verify(s.id, "full")
    assert not full.ok and full.corrupt_blocks and full.corrupt_blocks[0].piece == s.pieces[0].id
    # A missing object: QUICK by listing reports it.
    client.request("DELETE", f"/{s3_env.bucket}/{s3_prefix}/sets/{s.id}/blockmap")
    quick = v.verify(s.id, "quick")
    assert not quick.ok and any(f.kind == "missing" for f in quick.findings)


def test_cache_is_rebuilt_from_the_bucket(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 3)
    url = s3_env.url(s3_prefix)
    m = BackupManager(url, clock=SimClock())
    m.register_database("db", src)
    s = m.backup("db", "full")
    cache = m.repository
    m.catalog.close()
    import shutil

    shutil.rmtree(cache)
    again = BackupManager(url)
    assert again.repository == cache
    assert again.catalog.set_ids() == {s.id}
    assert again.databases()[0].name == "db"
    again.restore("db", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(src, with_meta=False)


def test_two_hosts_share_one_bucket(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.url(s3_prefix)
    src_a, src_b = tmp_path / "a", tmp_path / "b"
    _tree(src_a, 4)
    _tree(src_b, 5)
    clock = SimClock()
    host_a = BackupManager(url, clock=clock)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-host-b"))
    host_b = BackupManager(url, clock=clock)
    assert host_a.repository != host_b.repository
    host_a.register_database("alpha", src_a)
    host_b.register_database("beta", src_b)
    mine = [host_a.backup("alpha", "full")]
    theirs = [host_b.backup("beta", "full")]
    for _ in range(3):
        clock.advance(days=1)
        mine.append(host_a.backup("alpha", "full"))
        theirs.append(host_b.backup("beta", "full"))
    # Each sees the other's sets on its next open (the cache catches up from the bucket).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-host-a"))
    seen_by_a = BackupManager(url, clock=clock)
    assert {s.id for s in theirs} <= seen_by_a.catalog.set_ids()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-host-b"))
    seen_by_b = BackupManager(url, clock=clock)
    seen_by_b.restore("alpha", tmp_path / "alpha-on-b")
    assert snapshot_tree(tmp_path / "alpha-on-b", with_meta=False) == snapshot_tree(src_a, with_meta=False)
    # Retention on both hosts at once, each for its own database.
    errors: list[BaseException] = []

    def run(manager: BackupManager, db: str) -> None:
        try:
            manager.apply_retention(db, RetentionPolicy.redundancy(2), dry_run=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(seen_by_a, "alpha")),
        threading.Thread(target=run, args=(seen_by_b, "beta")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    keys = _keys(s3_env, s3_prefix)
    left = {k.split("/")[1] for k in keys if k.startswith("sets/")}
    assert left == {s.id for s in mine[-2:] + theirs[-2:]}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-host-a"))
    assert BackupManager(url, clock=clock).catalog.set_ids() == left


def test_wrong_credentials_and_missing_bucket_are_one_clear_error(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.url(s3_prefix)
    src = tmp_path / "src"
    _tree(src, 6)
    m = BackupManager(url, clock=SimClock())
    m.register_database("db", src)
    s = m.backup("db", "full")
    cache = m.repository
    before = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(RustyBackupError, match="refused the credentials"):
        BackupManager(url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.secret_key)
    with pytest.raises(RustyBackupError, match='bucket "no-such-bucket" does not exist'):
        BackupManager("s3://no-such-bucket/x")
    # Nothing half-written: the cache is as it was and still works.
    after = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))
    assert [p for p in after if not p.startswith("catalog.db")] == [p for p in before if not p.startswith("catalog.db")]
    assert BackupManager(url).catalog.set_ids() == {s.id}


def test_a_read_only_identity_cannot_write_and_leaves_no_set(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.url(s3_prefix)
    src = tmp_path / "src"
    _tree(src, 7)
    m = BackupManager(url, clock=SimClock())
    m.register_database("db", src)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READONLY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READONLY_SECRET_KEY)
    reader = BackupManager(url, clock=SimClock())
    with pytest.raises(RustyBackupError):
        reader.backup("db", "full")
    assert reader.catalog.set_ids() == set()
    assert not any(k.endswith("manifest.json") for k in _keys(s3_env, s3_prefix))


def test_copy_local_to_s3_to_local_with_damage_found(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    clock, local, sets = _local_chain(tmp_path, 8, "f0.bin", b"new contents")
    remote = BackupManager(s3_env.url(s3_prefix), clock=clock)
    up = copy_sets(local, remote)
    assert up.ok and up.copied == [s.id for s in sets]
    assert copy_sets(local, remote).skipped == [s.id for s in sets]
    back = BackupManager(tmp_path / "back", clock=clock)
    down = copy_sets(remote, back)
    assert down.ok and down.copied == [s.id for s in sets]
    back.restore("db", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(tmp_path / "src", with_meta=False)
    # Damage in the bucket is found while copying down; nothing of that set is published.
    client = s3_env.client()
    key = f"{s3_prefix}/{sets[1].pieces[0].path}"
    data = bytearray(client.get(s3_env.bucket, key) or b"")
    data[100] ^= 0xFF
    client.put(s3_env.bucket, key, bytes(data))
    other = BackupManager(tmp_path / "other", clock=clock)
    damaged = copy_sets(BackupManager(s3_env.url(s3_prefix), clock=clock), other)
    assert damaged.copied == [sets[0].id]
    assert "failed its check while being copied" in damaged.failed[sets[1].id]
    assert other.catalog.set_ids() == {sets[0].id}


def test_a_failing_s3_mirror_fails_nothing_else(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 9)
    m = BackupManager(tmp_path / "main", clock=SimClock())
    good = s3_env.url(s3_prefix)
    bad = "s3://no-such-bucket/mirror"
    m.register_database("db", src, mirrors=[bad, good, tmp_path / "local-mirror"])
    s = m.backup("db", "full")
    status = {c.repository: c for c in copies(m.catalog, [s.id])[s.id]}
    assert status[bad].status is CopyStatus.FAILED and "does not exist" in status[bad].detail
    assert status[good].status is CopyStatus.COPIED
    assert status[str(tmp_path / "local-mirror")].status is CopyStatus.COPIED
    assert BackupManager(good).catalog.set_ids() == {s.id}


def test_init_needs_a_repository_and_never_makes_a_bucket(s3_env: SeaweedFS, s3_prefix: str) -> None:
    with pytest.raises(CatalogError, match="no repository at .*run `rustybackup --repo .* init` first"):
        BackupManager(s3_env.url(s3_prefix), create=False)
    BackupManager(s3_env.url(s3_prefix))
    assert _keys(s3_env, s3_prefix) == {"format": len(b"rustybackup-repository 1\n")}
    BackupManager(s3_env.url(s3_prefix), create=False)


def test_cli_on_an_s3_repository(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    import json
    import uuid

    from click.testing import CliRunner
    from rustybackup.cli import cli

    src = tmp_path / "src"
    _tree(src, 10)
    runner = CliRunner()
    bucket = f"new-{uuid.uuid4().hex[:10]}"
    # A missing bucket is one clear error; init makes one only when told to.
    r = runner.invoke(cli, ["--repo", f"s3://{bucket}/p", "init"])
    assert r.exit_code == 1 and "does not exist" in r.output and r.output.count("\n") == 1
    r = runner.invoke(cli, ["--repo", f"s3://{bucket}/p", "init", "--create-bucket"])
    assert r.exit_code == 0, r.output
    assert f"repository ready at s3://{bucket}/p" in r.output
    url = s3_env.url(s3_prefix)
    r = runner.invoke(cli, ["--repo", url, "list"])
    assert r.exit_code == 1 and "run `rustybackup --repo" in r.output
    assert runner.invoke(cli, ["--repo", url, "init"]).exit_code == 0
    assert runner.invoke(cli, ["--repo", url, "db", "add", "db", "--path", str(src)]).exit_code == 0
    r = runner.invoke(
        cli, ["--repo", url, "backup", "db", "--type", "full", "--json", "--upload-limit", "64MiB/s@00:00-00:00"]
    )
    assert r.exit_code == 0, r.output
    set_id = json.loads(r.output)["id"]
    r = runner.invoke(cli, ["--repo", url, "list", "--json"])
    assert [row["id"] for row in json.loads(r.output)] == [set_id]
    r = runner.invoke(cli, ["--repo", url, "verify", "db", "--level", "full"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--repo", url, "restore", "db", "--to", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(src, with_meta=False)
    r = runner.invoke(cli, ["copy", "--from", url, "--to", str(tmp_path / "local"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["copied"] == [set_id]


def test_retention_keeps_sets_while_another_host_holds_a_lock(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rustybackup import remote_repo

    monkeypatch.setattr(remote_repo, "LOCK_WAIT_SECONDS", 1.0)
    url = s3_env.url(s3_prefix)
    src = tmp_path / "src"
    _tree(src, 12)
    clock = SimClock()
    a = BackupManager(url, clock=clock)
    a.register_database("db", src)
    sets = []
    for _ in range(3):
        sets.append(a.backup("db", "full"))
        clock.advance(days=1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-host-b"))
    b = BackupManager(url, clock=clock)
    # Host B restores the oldest set (a shared lock object) while host A applies retention.
    with b.reading([sets[0].id]):
        assert a.apply_retention("db", RetentionPolicy.redundancy(1), dry_run=False) == []
        assert {k.split("/")[1] for k in _keys(s3_env, s3_prefix) if k.startswith("sets/")} == {s.id for s in sets}
    assert a.apply_retention("db", RetentionPolicy.redundancy(1), dry_run=False) == [sets[1].id, sets[0].id]
    assert {k.split("/")[1] for k in _keys(s3_env, s3_prefix) if k.startswith("sets/")} == {sets[2].id}


def test_budgeted_checks_cover_the_repository_least_recent_first(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path
) -> None:
    from datetime import timedelta

    src = tmp_path / "src"
    _tree(src, 13)
    clock = SimClock()
    m = BackupManager(s3_env.url(s3_prefix), clock=clock)
    m.register_database("db", src)
    for _ in range(3):
        m.backup("db", "full")
        clock.advance(hours=1)
    v = Verifier(m)
    checked: set[str] = set()
    # A tiny budget checks at least one item per run; repeated runs reach every item.
    for _ in range(12):
        clock.advance(minutes=1)
        v.verify("db", "standard", budget=timedelta(microseconds=1))
        checked = {c.item for c in v.coverage("db").items if c.last_verified is not None}
        if len(checked) == len(v.coverage("db").items):
            break
    assert len(checked) == len(v.coverage("db").items) == 6


def test_copy_into_s3_after_its_cache_was_lost(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    from rustybackup.remote_repo import drop_cache

    clock, local, sets = _local_chain(tmp_path, 15, "f2.bin", b"again")
    remote = BackupManager(s3_env.url(s3_prefix), clock=clock)
    assert copy_sets(local, remote, set_ids=[sets[0].id]).copied == [sets[0].id]
    assert remote.remote is not None
    remote.catalog.close()
    drop_cache(remote.remote.url)
    # The incremental's block map refers to its parent's, which only the bucket holds now.
    again = BackupManager(s3_env.url(s3_prefix), clock=clock)
    report = copy_sets(local, again)
    assert report.ok and report.copied == [sets[1].id], report.failed
    again.restore("db", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(tmp_path / "src", with_meta=False)
