"""`copy` between local repositories: byte-for-byte restores from the copy, parents
first, resumable, damage found while copying, nothing half-published."""

from __future__ import annotations

import random
from pathlib import Path

from engine_support import SimClock, snapshot_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupSet, BackupType
from rustybackup.copy import copy_sets, in_copy_order
from rustybackup.enums import SetStatus


def _tree(root: Path, seed: int, files: int = 5) -> None:
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(rnd.randrange(0, 70_000)))


def _chain(tmp_path: Path, clock: SimClock) -> tuple[BackupManager, Path, list[BackupSet]]:
    src = tmp_path / "src"
    _tree(src, 1)
    m = BackupManager(tmp_path / "a", clock=clock)
    m.register_database("db", src, block_size=4096)
    sets = [m.backup("db", "full")]
    for n in range(3):
        clock.advance(hours=1)
        (src / f"f{n}.bin").write_bytes(random.Random(n + 10).randbytes(9000))
        sets.append(m.backup("db", "incremental"))
    return m, src, sets


def test_copy_then_restore_each_set_byte_for_byte(tmp_path: Path) -> None:
    clock = SimClock()
    a, src, sets = _chain(tmp_path, clock)
    b = BackupManager(tmp_path / "b", clock=clock)
    report = copy_sets(a, b)
    assert report.ok and report.copied == [s.id for s in sets] and report.bytes_copied > 0
    assert b.databases()[0].name == "db"
    for s in sets:
        a.restore("db", tmp_path / f"ra-{s.id}", backup_set_id=s.id)
        b.restore("db", tmp_path / f"rb-{s.id}", backup_set_id=s.id)
        assert snapshot_tree(tmp_path / f"ra-{s.id}") == snapshot_tree(tmp_path / f"rb-{s.id}")
    b.restore("db", tmp_path / "latest")
    assert snapshot_tree(tmp_path / "latest", with_meta=False) == snapshot_tree(src, with_meta=False)


def test_copy_is_resumable_and_skips_what_is_there(tmp_path: Path) -> None:
    clock = SimClock()
    a, _, sets = _chain(tmp_path, clock)
    b = BackupManager(tmp_path / "b", clock=clock)
    first = copy_sets(a, b, set_ids=[sets[0].id, sets[1].id])
    assert first.copied == [sets[0].id, sets[1].id]
    again = copy_sets(a, b, "db")
    assert again.skipped == [sets[0].id, sets[1].id]
    assert again.copied == [s.id for s in sets[2:]]
    assert copy_sets(a, b).copied == []


def test_a_child_without_its_parent_is_not_copied(tmp_path: Path) -> None:
    clock = SimClock()
    a, _, sets = _chain(tmp_path, clock)
    b = BackupManager(tmp_path / "b", clock=clock)
    report = copy_sets(a, b, set_ids=[sets[2].id])
    assert not report.ok and sets[1].id in report.failed[sets[2].id]
    assert b.catalog.set_ids() == set()


def test_a_damaged_piece_is_found_during_the_copy_and_nothing_is_published(tmp_path: Path) -> None:
    clock = SimClock()
    a, _, sets = _chain(tmp_path, clock)
    piece = a.repository / sets[1].pieces[0].path
    with open(piece, "r+b") as fh:
        fh.seek(200)
        byte = fh.read(1)
        fh.seek(200)
        fh.write(bytes([byte[0] ^ 0x40]))
    b = BackupManager(tmp_path / "b", clock=clock)
    report = copy_sets(a, b)
    assert report.copied == [sets[0].id]
    assert "failed its check while being copied" in report.failed[sets[1].id]
    assert sets[1].pieces[0].id in report.failed[sets[1].id]
    # Its descendants wait for it; the target holds nothing of them.
    assert set(report.failed) == {s.id for s in sets[1:]}
    assert sorted(p.name for p in (b.repository / "sets").iterdir()) == [sets[0].id]
    assert list((b.repository / "staging").iterdir()) == []
    assert b.catalog.set_ids() == {sets[0].id}


def test_corrupt_sets_are_not_copied(tmp_path: Path) -> None:
    clock = SimClock()
    a, _, sets = _chain(tmp_path, clock)
    a.catalog.mark_status(sets[3].id, SetStatus.CORRUPT)
    b = BackupManager(tmp_path / "b", clock=clock)
    report = copy_sets(a, b)
    assert report.failed == {sets[3].id: "it is corrupt in the source"}


def test_a_copied_set_left_unregistered_is_swept_and_copied_again(tmp_path: Path) -> None:
    clock = SimClock()
    a, _, sets = _chain(tmp_path, clock)
    b = BackupManager(tmp_path / "b", clock=clock)
    # A copy killed after the files landed, before the catalog row: a staging directory.
    stale = b.repository / "staging" / sets[0].id
    stale.mkdir()
    (stale / "data.piece").write_bytes(b"partial")
    b.cleanup()
    assert copy_sets(a, b).copied == [s.id for s in sets]


def _fake_set(i: int, parent: int | None, start: int) -> BackupSet:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=start)
    sid = t.strftime("%Y%m%dT%H%M%S%fZ") + f"-{i:08x}"
    return BackupSet(
        id=sid,
        database="db",
        backup_type=BackupType.FULL if parent is None else BackupType.INCREMENTAL,
        parent_id=None,
        started_at=t,
        finished_at=t,
        status=SetStatus.AVAILABLE,
        size=0,
        block_size=4096,
        algorithm="blake3",
        pieces=(),
        tags=(),
    )


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 10_000)), min_size=1, max_size=25), st.randoms())
def test_copy_order_puts_parents_first(spec: list[tuple[int, int]], rnd: random.Random) -> None:
    # Parents are drawn among the earlier sets, whatever their start times (clock skew
    # between hosts): the order must still put every parent first and keep every set.
    base = [_fake_set(i, None, start) for i, (_, start) in enumerate(spec)]
    sets = []
    for i, (pick, _) in enumerate(spec):
        parent = base[pick % i].id if i and pick % 3 else None
        sets.append(BackupSet(**{**base[i].__dict__, "parent_id": parent}))
    shuffled = sets[:]
    rnd.shuffle(shuffled)
    out = in_copy_order(shuffled)
    assert sorted(s.id for s in out) == sorted(s.id for s in sets)
    pos = {s.id: n for n, s in enumerate(out)}
    for s in sets:
        if s.parent_id is not None:
            assert pos[s.parent_id] < pos[s.id]


def test_cli_copy_json_exit_codes_and_resume(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner
    from rustybackup.cli import cli

    clock = SimClock()
    a, _, sets = _chain(tmp_path, clock)
    runner = CliRunner()
    r = runner.invoke(cli, ["--repo", str(a.repository), "copy", "--to", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["copied"] == [s.id for s in sets]
    r = runner.invoke(
        cli, ["copy", "--from", str(a.repository), "--to", str(tmp_path / "b"), "--database", "db", "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.output)["skipped"] == [s.id for s in sets]
    r = runner.invoke(cli, ["copy", "--from", str(tmp_path / "nowhere"), "--to", str(tmp_path / "c")])
    assert r.exit_code == 1 and "--from: no repository at" in r.output
    r = runner.invoke(cli, ["copy", "--from", str(a.repository), "--to", "s3://Bad/x"])
    assert r.exit_code == 2 and "not a valid bucket name" in r.output
    r = runner.invoke(cli, ["copy", "--from", str(a.repository), "--to", str(tmp_path / "d"), "--set", sets[2].id])
    assert r.exit_code == 1 and f"failed {sets[2].id}" in r.output
    r = runner.invoke(
        cli, ["copy", "--from", str(a.repository), "--to", str(tmp_path / "d"), "--upload-limit", "fast@1:00-2:00"]
    )
    assert r.exit_code == 2 and "upload limit #1" in r.output
