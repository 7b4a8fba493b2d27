"""Commands on a remote repository (SeaweedFS, tests/s3_support.py) that used to need a
local one: archive-push / archive-get (every push in the bucket before it exits 0, a cut
push uploaded by the next, other content refused, another host recovering from the
bucket alone), SQLite WAL capture, and the commands that refuse a remote repository
saying why (key slots of an unencrypted repository, the scheduler's own commands) without
writing to the bucket."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rustybackup import BackupManager
from rustybackup.cli import cli
from rustybackup.enums import BackupType
from rustybackup.postgres import archive, wal
from s3_support import SeaweedFS, point_at


@pytest.fixture
def s3_env(s3_server: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    return point_at(s3_server, monkeypatch, tmp_path / "cache-a")


def _run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--repo", url, *args])


def _manifests(server: SeaweedFS, prefix: str) -> set[str]:
    keys = server.client().list_keys(server.bucket, prefix + "/sets/")
    return {k.split("/")[2] for k in keys if k.endswith("/manifest.json")}


def _segment(d: Path, n: int, fill: bytes = b"") -> Path:
    p = d / wal.segment_name(1, n, 1 << 20)
    p.write_bytes((fill or n.to_bytes(4, "big")) * 5000)
    return p


def test_archive_push_lands_in_the_bucket_and_another_host_gets_it(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.url(s3_prefix)
    (tmp_path / "pgdata").mkdir()
    BackupManager(url).register_database("pg", tmp_path / "pgdata", kind="postgresql", dsn="host=/nonexistent")
    src = tmp_path / "pg_wal"
    src.mkdir()
    first, second = _segment(src, 1), _segment(src, 2)
    assert _run(url, "archive-push", "pg", str(first)).exit_code == 0
    # Exit 0 means in the bucket: a set of its own, there before the next push starts.
    after_first = _manifests(s3_env, s3_prefix)
    assert len(after_first) == 1
    # A push cut after its spool copy, before its upload (the host lost the server):
    # the next push uploads it first.
    archive.push(BackupManager(url, create=False), "pg", second, seal=False, ahead=False)
    assert _manifests(s3_env, s3_prefix) == after_first
    third = _segment(src, 3)
    assert _run(url, "archive-push", "pg", str(third)).exit_code == 0
    assert len(_manifests(s3_env, s3_prefix)) == 3
    # The same file again is archived already; other content under its name is refused.
    assert _run(url, "archive-push", "pg", str(first)).exit_code == 0
    assert len(_manifests(s3_env, s3_prefix)) == 3
    _segment(src, 1, fill=b"other")
    refused = _run(url, "archive-push", "pg", str(first))
    assert refused.exit_code == 1 and "refusing to replace an archived WAL file" in refused.output
    assert len(_manifests(s3_env, s3_prefix)) == 3
    # Another host, from the bucket alone (its catalog rebuilt from the manifests, which
    # are all WAL archives: it must still know "pg" is a PostgreSQL database).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    out = tmp_path / "restore"
    out.mkdir()
    for n, original in ((2, 2), (3, 3)):
        name = wal.segment_name(1, n, 1 << 20)
        got = _run(url, "archive-get", "pg", name, str(out / "RECOVERYXLOG"))
        assert got.exit_code == 0, got.output
        assert (out / "RECOVERYXLOG").read_bytes() == original.to_bytes(4, "big") * 5000
    missing = _run(url, "archive-get", "pg", wal.segment_name(1, 9, 1 << 20), str(out / "RECOVERYXLOG"))
    assert (missing.exit_code, missing.output) == (1, "")
    # The pieces fetched for recovery do not stay in the cache.
    host_b = BackupManager(url, create=False)
    assert host_b.catalog.get_database("pg").kind == "postgresql"
    assert not list((host_b.repository / "sets").glob("*/data.piece"))


def test_archive_push_to_a_remote_repository_that_does_not_exist_creates_nothing(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path
) -> None:
    seg = _segment(tmp_path, 1)
    r = _run(s3_env.url(s3_prefix), "archive-push", "pg", str(seg))
    assert r.exit_code == 1 and s3_prefix in r.output
    assert s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/") == {}


def test_sqlite_capture_into_a_remote_repository(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.url(s3_prefix)
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    assert _run(url, "init").exit_code == 0
    assert _run(url, "db", "add", "app", "--kind", "sqlite", "--path", str(db)).exit_code == 0
    assert _run(url, "backup", "app", "--type", "full").exit_code == 0
    for i in range(2):
        conn.execute("INSERT INTO t VALUES (?)", (i,))
        conn.commit()
        step = _run(url, "capture", "app", "--once")
        assert step.exit_code == 0 and "captured into set" in step.output, step.output
    conn.close()
    captured = BackupManager(url, create=False).catalog.list_sets("app", BackupType.ARCHIVE_LOG)
    assert len(captured) == 2 and {s.id for s in captured} <= _manifests(s3_env, s3_prefix)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    restored = _run(url, "restore", "app", "--to", str(tmp_path / "r"))
    assert restored.exit_code == 0, restored.output
    with sqlite3.connect(tmp_path / "r" / "app.db") as back:
        assert back.execute("SELECT x FROM t ORDER BY x").fetchall() == [(0,), (1,)]


@pytest.mark.parametrize(
    "args",
    [
        ["key", "list"],
        ["key", "list", "--json"],
        ["key", "add", "--new-key-file", "k.json"],
        ["key", "remove", "0123abcd"],
        ["key", "rotate"],
    ],
)
def test_key_commands_on_an_unencrypted_remote_repository_say_so(
    s3_env: SeaweedFS, s3_prefix: str, args: list[str]
) -> None:
    # Key commands work on s3:// repositories (tests/test_encryption_s3.py); on one
    # made without --encryption they change nothing and say why.
    url = s3_env.url(s3_prefix)
    assert _run(url, "init").exit_code == 0
    before = s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/")
    r = _run(url, *args)
    assert r.exit_code == 1
    assert f"{url}: the repository is not encrypted" in r.output
    assert "nothing was changed" in r.output
    assert s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/") == before


@pytest.mark.parametrize("args", [["job", "list"], ["window", "list"], ["history"], ["run", "--once"]])
def test_scheduler_commands_point_at_job_targets(args: list[str]) -> None:
    # No server needed: the refusal comes before any request.
    r = _run("s3://bucket-x/p", *args)
    assert r.exit_code == 2
    assert "keeps its jobs and history beside a local repository" in r.output
    assert "--target s3://bucket-x/p" in r.output
