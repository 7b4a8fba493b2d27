"""Retention on a real repository: the plan, dry runs, deletion order, readers, and
that every point the policy promises still restores byte for byte afterwards."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_support import SimClock, sim_clock
from rustybackup import BackupManager, BackupType, RetentionPolicy
from rustybackup.cli import cli

clock = pytest.fixture(sim_clock)


def _history(tmp_path: Path, clock: SimClock) -> tuple[BackupManager, list[tuple[str, bytes]]]:
    """Three weekly FULLs, each followed by two daily INCREMENTALs; returns (set id, content)."""
    manager = BackupManager(tmp_path / "repo", clock=clock)
    src = tmp_path / "src"
    src.mkdir()
    manager.register_database("db", src)
    taken: list[tuple[str, bytes]] = []
    for week in range(3):
        for day in range(3):
            content = bytes([week * 3 + day]) * 20000
            (src / "data.bin").write_bytes(content)
            kind = BackupType.FULL if day == 0 else BackupType.INCREMENTAL
            taken.append((manager.backup("db", kind).id, content))
            clock.advance(days=1)
        clock.advance(days=4)
    return manager, taken


def test_redundancy_deletes_the_oldest_chain_and_keeps_the_rest_restorable(tmp_path: Path, clock: SimClock) -> None:
    manager, taken = _history(tmp_path, clock)
    ids = [sid for sid, _ in taken]
    policy = RetentionPolicy.redundancy(2)
    assert manager.apply_retention("db", policy) == list(reversed(ids[:3]))  # dry run by default
    assert len(manager.catalog.list_sets()) == 9
    deleted = manager.apply_retention("db", policy, dry_run=False)
    assert deleted == list(reversed(ids[:3]))
    assert sorted(s.id for s in manager.catalog.list_sets()) == sorted(ids[3:])
    assert not any((manager.repository / "sets" / sid).exists() for sid in ids[:3])
    # Every kept point restores byte for byte.
    for i, (sid, content) in enumerate(taken[3:]):
        out = tmp_path / f"out{i}"
        manager.restore("db", out, backup_set_id=sid)
        assert (out / "data.bin").read_bytes() == content
    # Applying again deletes nothing more.
    assert manager.apply_retention("db", policy, dry_run=False) == []


def test_every_decision_has_a_reason_a_human_can_check(tmp_path: Path, clock: SimClock) -> None:
    manager, taken = _history(tmp_path, clock)
    plan = manager.catalog.retention_plan("db", RetentionPolicy.recovery_window(timedelta(days=8)))
    assert [d.set_id for d in plan] == [sid for sid, _ in taken]
    assert all(d.reason for d in plan)
    kept = [d.set_id for d in plan if d.keep]
    # The window reaches back into the second week: its FULL is the point of recoverability.
    assert kept[0] == taken[3][0]


def test_a_set_being_read_is_kept_with_that_reason(tmp_path: Path, clock: SimClock) -> None:
    manager, taken = _history(tmp_path, clock)
    oldest_full = taken[0][0]
    with manager.reading([oldest_full]):
        assert manager.being_read("db") == [oldest_full]
        deleted = manager.apply_retention("db", RetentionPolicy.redundancy(1), dry_run=False)
    assert oldest_full not in deleted
    assert oldest_full in {s.id for s in manager.catalog.list_sets()}


def test_the_cli_shows_the_plan_and_applies_it(tmp_path: Path, clock: SimClock) -> None:
    manager, taken = _history(tmp_path, clock)
    repo = str(manager.repository)
    dry = CliRunner().invoke(cli, ["--repo", repo, "retention", "db", "--redundancy", "2", "--json"])
    assert dry.exit_code == 0, dry.output
    data = json.loads(dry.output)
    assert data["applied"] is False
    assert data["deleted"] == [d["set_id"] for d in data["decisions"] if not d["keep"]]
    assert len(data["deleted"]) == 3
    applied = CliRunner().invoke(cli, ["--repo", repo, "retention", "db", "--redundancy", "2", "--apply"])
    assert applied.exit_code == 0, applied.output
    assert "6 kept, 3 deleted" in applied.output


def test_the_cli_table_is_exactly_what_apply_deletes_while_a_set_is_being_read(tmp_path: Path, clock: SimClock) -> None:
    manager, taken = _history(tmp_path, clock)
    ids = [sid for sid, _ in taken]
    repo = str(manager.repository)
    args = ["--repo", repo, "retention", "db", "--redundancy", "1", "--json"]
    with manager.reading([ids[0]]):
        shown = json.loads(CliRunner().invoke(cli, args).output)
        keep = {d["set_id"]: d["keep"] for d in shown["decisions"]}
        assert keep[ids[0]] is True  # being read: the table says so, not only --apply
        applied = json.loads(CliRunner().invoke(cli, [*args, "--apply"]).output)
    # The dry run lists the plan's order (oldest first); --apply deletes newest first.
    assert shown["deleted"] == [sid for sid in ids if not keep[sid]]
    assert applied["deleted"] == list(reversed(shown["deleted"]))
    assert {s.id for s in manager.catalog.list_sets()} == {sid for sid in ids if keep[sid]}


def test_being_read_is_one_listing_not_one_open_per_set(
    tmp_path: Path, clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, taken = _history(tmp_path, clock)
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        opened.append(os.fspath(path))
        return real_open(path, flags, mode)

    with manager.reading([taken[4][0]]):
        monkeypatch.setattr(os, "open", counting_open)
        assert manager.being_read("db") == [taken[4][0]]
        monkeypatch.undo()
    # Nine sets, one reader: the listing names one file, and only that one is opened.
    assert [Path(p).name for p in opened] == [taken[4][0]]


def test_a_scheduled_backup_with_retention_deletes_what_the_policy_drops(tmp_path: Path, clock: SimClock) -> None:
    """The scheduler applies a job's retention for real on a real manager (whose
    apply_retention is a dry run unless told otherwise)."""
    from rustybackup import BackupScheduler, ScheduledBackup

    manager, taken = _history(tmp_path, clock)
    scheduler = BackupScheduler(manager, tmp_path / "sched.json", clock=clock)
    scheduler.add_job(
        ScheduledBackup("nightly", "Nightly", "db", BackupType.FULL, "0 1 * * *", retention="redundancy=2")
    )
    made = scheduler.execute_due_jobs(clock.advance(days=1))
    assert len(made) == 1
    # The new FULL is the newest of two kept chains: the two oldest chains go.
    assert {s.id for s in manager.catalog.list_sets()} == {sid for sid, _ in taken[6:]} | set(made)
