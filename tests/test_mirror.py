"""Mirrors: one backup read once and written to every repository; a failing mirror
fails nothing else; each set's status per repository is recorded and shown."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_support import SimClock, snapshot_tree
from rustybackup import BackupManager, ConfigError
from rustybackup.cli import cli
from rustybackup.mirrors import CopyStatus, copies, mirrors_of


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(3)
    for i in range(4):
        (src / f"f{i}").write_bytes(rnd.randbytes(rnd.randrange(1, 50_000)))
    return src


def test_one_backup_lands_in_every_mirror(tmp_path: Path) -> None:
    clock = SimClock()
    src = _src(tmp_path)
    m = BackupManager(tmp_path / "main", clock=clock)
    m.register_database("db", src, mirrors=[tmp_path / "m1", str(tmp_path / "m2")])
    assert mirrors_of(m.catalog, "db") == [str(tmp_path / "m1"), str(tmp_path / "m2")]
    size = sum(f.stat().st_size for f in src.iterdir())
    full = m.backup("db", "full")
    # The source was read once, not once per repository.
    assert full.bytes_read == size
    (src / "f1").write_bytes(b"changed")
    clock.advance(hours=1)
    inc = m.backup("db", "incremental")
    assert inc.bytes_read <= sum(f.stat().st_size for f in src.iterdir())
    for name in ("m1", "m2"):
        mirror = BackupManager(tmp_path / name, clock=clock)
        assert mirror.catalog.set_ids() == {full.id, inc.id}
        mirror.restore("db", tmp_path / f"r-{name}")
        assert snapshot_tree(tmp_path / f"r-{name}", with_meta=False) == snapshot_tree(src, with_meta=False)
    status = copies(m.catalog, [full.id, inc.id])
    assert {(c.repository, c.status) for c in status[inc.id]} == {
        (str(tmp_path / "m1"), CopyStatus.COPIED),
        (str(tmp_path / "m2"), CopyStatus.COPIED),
    }


def test_a_failing_mirror_fails_nothing_else_and_catches_up(tmp_path: Path) -> None:
    clock = SimClock()
    src = _src(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the mirror directory should be")
    m = BackupManager(tmp_path / "main", clock=clock)
    m.register_database("db", src, mirrors=[blocker, tmp_path / "good"])
    full = m.backup("db", "full")
    assert full.id in m.catalog.set_ids()
    status = {c.repository: c for c in copies(m.catalog, [full.id])[full.id]}
    assert status[str(blocker)].status is CopyStatus.FAILED and "is not a directory" in status[str(blocker)].detail
    assert status[str(tmp_path / "good")].status is CopyStatus.COPIED
    # The mirror comes back: the next backup sends the whole chain it lacks.
    blocker.unlink()
    clock.advance(hours=1)
    inc = m.backup("db", "incremental")
    assert BackupManager(blocker, clock=clock).catalog.set_ids() == {full.id, inc.id}
    status = {c.repository: c for c in copies(m.catalog, [full.id])[full.id]}
    assert status[str(blocker)].status is CopyStatus.COPIED


def test_bad_mirrors_are_refused_by_position(tmp_path: Path) -> None:
    m = BackupManager(tmp_path / "main")
    with pytest.raises(ConfigError, match=r"mirrors\[1\]: .*not a valid bucket name"):
        m.register_database("db", tmp_path, mirrors=[tmp_path / "ok", "s3://Bad/x"])
    with pytest.raises(ConfigError, match=r"mirrors\[0\] .* is the repository itself"):
        m.register_database("db", tmp_path, mirrors=[tmp_path / "main"])
    with pytest.raises(ConfigError, match=r"mirrors\[1\] .* is listed twice"):
        m.register_database("db", tmp_path, mirrors=[tmp_path / "a", tmp_path / "a"])
    assert m.databases() == []


def test_cli_db_add_mirror_and_list_shows_status(tmp_path: Path) -> None:
    src = _src(tmp_path)
    repo = tmp_path / "main"
    runner = CliRunner()
    base = ["--repo", str(repo)]
    assert runner.invoke(cli, [*base, "init"]).exit_code == 0
    r = runner.invoke(cli, [*base, "db", "add", "db", "--path", str(src), "--mirror", str(tmp_path / "m1")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, [*base, "backup", "db", "--type", "full", "--json"])
    assert r.exit_code == 0, r.output
    set_id = json.loads(r.output)["id"]
    r = runner.invoke(cli, [*base, "list", "--json"])
    rows = json.loads(r.output)
    assert rows[0]["id"] == set_id
    assert rows[0]["mirrors"] == {str(tmp_path / "m1"): {"status": "copied", "detail": ""}}
    r = runner.invoke(cli, [*base, "list"])
    assert "m1: copied" in r.output


def test_run_takes_upload_windows(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--repo", str(tmp_path / "main")]
    assert runner.invoke(cli, [*base, "init"]).exit_code == 0
    bad = runner.invoke(cli, [*base, "run", "--once", "--upload-limit", "50MiB/s@25:00-06:00"])
    assert bad.exit_code == 2 and "upload limit #1" in bad.output and "start 25:00" in bad.output
    ok = runner.invoke(
        cli, [*base, "run", "--once", "--upload-limit", "50MiB/s@22:00-06:00", "--upload-tz", "Europe/Berlin"]
    )
    assert ok.exit_code == 0, ok.output
