"""Point-in-time recovery of a real PostgreSQL cluster: a writer commits timestamped rows
while the WAL is archived through `rustybackup archive-push` and base backups run; every
restore to an instant T, started and recovered by PostgreSQL itself, must hold exactly
the rows committed at or before T."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from pg_support import Cluster, Writer, archive_command, archived_cluster, as_user, give, rb, restore_and_start, workdir
from rustybackup import BackupManager, manifest
from rustybackup.errors import NoRecoveryPath, RustyBackupError
from rustybackup.postgres.recovery import plan

NAME = "main"


@dataclass
class Origin:
    bin: Path
    repo: Path
    cluster: Cluster
    writer: Writer
    full_done: datetime
    incr_done: datetime
    diff_done: datetime


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with archived_cluster("rb-pg-origin-", NAME, server_env={"RUSTYBACKUP_WAL_GROUP": "4"}) as a:
        bin, repo, cluster = a.bin, a.repo, a.cluster
        with Writer(cluster) as writer:
            time.sleep(0.5)
            rb(repo, "backup", NAME, "--type", "full")
            full_done = datetime.now().astimezone()
            time.sleep(1.5)
            rb(repo, "backup", NAME, "--type", "incremental")
            incr_done = datetime.now().astimezone()
            time.sleep(1.5)
            rb(repo, "backup", NAME, "--type", "differential")
            diff_done = datetime.now().astimezone()
            time.sleep(1.5)
        assert writer.error is None, writer.error
        cluster.switch_and_wait_archived()
        yield Origin(bin, repo, cluster, writer, full_done, incr_done, diff_done)


def _ids(c: Cluster, table: str = "rows") -> list[int]:
    return [int(r[0]) for r in c.query(f"SELECT id FROM {table} ORDER BY id")]


def _index_after(rows: list[object], when: datetime) -> int:
    return next(i for i, r in enumerate(rows) if getattr(r, "returned_at") > when)  # noqa: B009


def test_restores_to_random_instants_hold_exactly_the_rows_committed_by_then(origin: Origin) -> None:
    rows = origin.writer.rows
    rng = random.Random(14)
    first = _index_after(list(rows), origin.full_done)
    middle = _index_after(list(rows), origin.incr_done)
    last = _index_after(list(rows), origin.diff_done)
    # Instants served by FULL + WAL, FULL + INCREMENTAL + WAL, FULL + DIFFERENTIAL + WAL.
    picks = [rng.randrange(first, middle - 1), rng.randrange(middle, last - 1), rng.randrange(last, len(rows) - 2)]
    for i in picks:
        until = origin.writer.instant_after(i)
        for restored in restore_and_start(origin.bin, origin.repo, NAME, until):
            got = _ids(restored.cluster)
            assert got == [r.id for r in rows[: i + 1]], f"until {until.isoformat()}"
            assert all(r.ts <= until for r in rows[: i + 1]) and rows[i + 1].ts > until


def test_the_recovery_path_names_the_base_backup_and_the_wal_sets(origin: Origin) -> None:
    rows = origin.writer.rows
    m = BackupManager(origin.repo)
    # Between FULL and INCREMENTAL: the FULL and the sealed WAL from its start on.
    i = _index_after(list(rows), origin.full_done) + 5
    path = m.catalog.find_recovery_path(NAME, origin.writer.instant_after(i))
    kinds = [s.backup_type.value for s in path]
    assert kinds[0] == "full" and "incremental" not in kinds
    assert kinds[1:] and set(kinds[1:]) == {"archive_log"}
    # Between INCREMENTAL and DIFFERENTIAL: its chain, and WAL from the INCREMENTAL's start on.
    i = _index_after(list(rows), origin.incr_done) + 5
    path = m.catalog.find_recovery_path(NAME, origin.writer.instant_after(i))
    assert [s.backup_type.value for s in path][:2] == ["full", "incremental"]
    assert all(s.finished_at >= path[1].started_at for s in path[2:])
    # After the DIFFERENTIAL: the FULL and the DIFFERENTIAL only.
    path = m.catalog.find_recovery_path(NAME, origin.writer.instant_after(len(rows) - 3))
    assert [s.backup_type.value for s in path][:2] == ["full", "differential"]


def test_an_instant_past_the_archive_is_refused_not_rounded_down(origin: Origin) -> None:
    m = BackupManager(origin.repo)
    later = datetime.now().astimezone().replace(year=datetime.now().year + 1)
    with pytest.raises(NoRecoveryPath, match="does not reach"):
        m.catalog.find_recovery_path(NAME, later)


def test_a_segment_pushed_again_is_accepted_and_another_under_its_name_refused(origin: Origin, tmp_path: Path) -> None:
    d = workdir("rb-pg-push-")
    try:
        ((name,),) = origin.cluster.query("SELECT last_archived_wal FROM pg_stat_archiver")
        rb(origin.repo, "archive-get", NAME, name, str(d / name))
        again = rb(origin.repo, "archive-push", NAME, str(d / name), check=False)
        assert again.returncode == 0, again.stderr
        data = bytearray((d / name).read_bytes())
        data[1000] ^= 0xFF
        (d / name).unlink()
        (d / name).write_bytes(bytes(data))
        give(d / name)
        changed = rb(origin.repo, "archive-push", NAME, str(d / name), check=False)
        assert changed.returncode == 1
        assert "already archived" in changed.stderr and name in changed.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_archive_get_of_a_missing_segment_exits_1_quietly(origin: Origin) -> None:
    d = workdir("rb-pg-get-")
    try:
        proc = rb(origin.repo, "archive-get", NAME, "0000000100000000000000FE", str(d / "x"), check=False)
        assert (proc.returncode, proc.stderr) == (1, "")
        assert not (d / "x").exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def _damageable(origin: Origin, prefix: str) -> Iterator[tuple[Path, BackupManager, datetime]]:
    """A copy of the origin's repository (removed after: the other tests read the
    original), its manager, and an instant between FULL and INCREMENTAL, which the WAL
    of sealed sets serves."""
    copy = workdir(prefix) / "repo"
    shutil.copytree(origin.repo, copy, symlinks=True)
    try:
        until = origin.writer.instant_after(_index_after(list(origin.writer.rows), origin.full_done) + 5)
        yield copy, BackupManager(copy), until
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def test_a_gap_in_the_archive_raises_no_recovery_path_naming_the_segment(origin: Origin) -> None:
    with _damageable(origin, "rb-pg-gap-") as (copy, m, until):
        db = m.catalog.get_database(NAME)
        before = plan(m, db, until)
        assert before.log_set_ids, "the WAL after the FULL is sealed into sets"
        victim = m.catalog.get_set(before.log_set_ids[-1])
        held = {f.path for f in manifest.load(copy / victim.manifest).files}
        first_missing = next(n for n in before.wal if n in held)
        m.delete(victim.id)
        with pytest.raises(NoRecoveryPath, match=first_missing):
            m.catalog.find_recovery_path(NAME, until)
        with pytest.raises(NoRecoveryPath, match=first_missing):
            m.restore(NAME, copy.parent / "target", until=until)
        assert not (copy.parent / "target").exists()


def test_a_damaged_archived_segment_fails_the_restore_naming_it_before_any_data_is_written(origin: Origin) -> None:
    """The restore reads and checks every planned WAL file from its set first: a flipped
    byte is never staged for PostgreSQL, the error names the segment, and the target is
    left as it was (absent)."""
    with _damageable(origin, "rb-pg-damaged-") as (copy, m, until):
        db = m.catalog.get_database(NAME)
        planned = plan(m, db, until)
        victim = m.catalog.get_set(planned.log_set_ids[0])
        mf = manifest.load(copy / victim.manifest)
        named = {f.path for f in mf.files} & set(planned.wal)
        assert named, "the victim set holds planned WAL"
        (source,) = [s for s in mf.sources if s.set_id == victim.id]
        piece = copy / "sets" / victim.id / source.piece
        data = bytearray(piece.read_bytes())
        # One byte in every 64 KiB past the header: whichever planned segment is read
        # first meets a damaged block.
        for offset in range(4096, len(data), 1 << 16):
            data[offset] ^= 0x01
        piece.write_bytes(bytes(data))
        target = copy.parent / "target"
        with pytest.raises(RustyBackupError) as caught:
            m.restore(NAME, target, until=until)
        assert any(n in str(caught.value) for n in named), str(caught.value)
        assert not target.exists()


def test_a_set_restored_by_id_starts_consistent_as_it_was_taken(origin: Origin) -> None:
    m = BackupManager(origin.repo)
    incr = m.catalog.list_sets(NAME, "incremental")[-1]
    base = workdir("rb-pg-byset-")
    try:
        rb(origin.repo, "restore", NAME, "--to", str(base / "data"), "--set", incr.id)
        assert not (base / "data" / "recovery.signal").exists()
        c = Cluster.on(origin.bin, base / "data", base, {"archive_mode": "off"})
        try:
            c.start()
            c.wait_promoted()
            got = _ids(c)
        finally:
            c.stop("immediate")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = origin.writer.rows
    # A prefix of the writer's rows: everything committed before the FULL finished (the
    # INCREMENTAL started later), nothing started after the INCREMENTAL finished.
    assert got == [r.id for r in rows[: len(got)]]
    assert all(r.id in got for r in rows if r.returned_at <= origin.full_done)
    assert all(r.ts <= origin.incr_done for r in rows[: len(got)])


def test_a_restore_after_a_restore_follows_the_new_timeline(origin: Origin) -> None:
    rows = origin.writer.rows
    i = _index_after(list(rows), origin.incr_done) + 3
    first_until = origin.writer.instant_after(i)
    # The first restore is promoted onto timeline 2 and archives into the same repository.
    for first in restore_and_start(
        origin.bin, origin.repo, NAME, first_until, archive=archive_command(origin.repo, NAME)
    ):
        ((tli,),) = first.cluster.query("SELECT timeline_id FROM pg_control_checkpoint()")
        assert tli >= 2
        first.cluster.query("CHECKPOINT")
        with Writer(first.cluster, table="after") as w2:
            time.sleep(1.0)
        assert w2.error is None, w2.error
        first.cluster.switch_and_wait_archived()
        j = len(w2.rows) // 2
        second_until = w2.instant_after(j)
        for second in restore_and_start(origin.bin, origin.repo, NAME, second_until):
            assert _ids(second.cluster) == [r.id for r in rows[: i + 1]]
            assert _ids(second.cluster, "after") == [r.id for r in w2.rows[: j + 1]]
            ((tli2,),) = second.cluster.query("SELECT timeline_id FROM pg_control_checkpoint()")
            assert tli2 > tli
            # The restore named the timeline it planned along (the first's), so the server
            # did not probe the archive for a newer one as it started.
            conf = (second.cluster.data / "postgresql.auto.conf").read_text()
            assert f"recovery_target_timeline = '{tli}'" in conf


def test_a_server_killed_during_a_backup_leaves_no_set_and_the_next_backup_works(origin: Origin) -> None:
    m = BackupManager(origin.repo)
    before = {s.id for s in m.catalog.list_sets(NAME)}
    cmd = [
        *as_user(),
        sys.executable,
        "-m",
        "rustybackup",
        "--repo",
        str(origin.repo),
        "backup",
        NAME,
        "--type",
        "full",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        # Killed as soon as the backup's session is inside the backup API.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = origin.cluster.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rustybackup' AND backend_type = 'client backend'"
            )
            if busy[0][0] or proc.poll() is not None:
                break
            time.sleep(0.005)
        origin.cluster.kill()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "nothing was registered" in err or "pg_backup" in err or "connect" in err, err
    assert {s.id for s in m.catalog.list_sets(NAME) if s.backup_type.value != "archive_log"} == {
        s for s in before if m.catalog.get_set(s).backup_type.value != "archive_log"
    }
    assert not any((origin.repo / "staging").iterdir())
    origin.cluster.start()
    rb(origin.repo, "backup", NAME, "--type", "full")
    after = [s for s in m.catalog.list_sets(NAME) if s.id not in before and s.backup_type.value == "full"]
    assert len(after) == 1


def test_restore_test_starts_a_server_on_the_set_and_runs_amcheck_and_the_users_sql(origin: Origin) -> None:
    m = BackupManager(origin.repo)
    incr = m.catalog.list_sets(NAME, "incremental")[-1]
    # Every set of the database, WAL sets included, verifies block by block first.
    full = rb(origin.repo, "verify", NAME, "--level", "full", check=False)
    assert full.returncode == 0, full.stdout + full.stderr

    def restore_test(sql: str) -> subprocess.CompletedProcess[str]:
        return rb(origin.repo, "verify", "--set", incr.id, "--level", "restore-test", "--pg-sql", sql, check=False)

    ok = restore_test("SELECT count(*) > 0 FROM rows")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = restore_test("SELECT count(*) < 0 FROM rows")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "check SQL returned False" in bad.stdout + bad.stderr
