"""Saving the scheduler configuration: the one atomic-write helper, and the encoder
that re-encodes only the jobs that changed (checked against ``config_to_json``)."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import store
from rustybackup.config import SchedulerConfig, config_to_json, encode_config, load_config, parse_config, save_config
from rustybackup.jobs import ScheduledBackup
from rustybackup.windows import off_hours


def backup_job(n: int, **changes: Any) -> ScheduledBackup:
    return ScheduledBackup(
        id=f"j{n}",
        name=f"job {n}",
        database="db",
        backup_type="full",  # type: ignore[arg-type]
        schedule="0 2 * * *",
        **changes,
    )


def test_atomic_writer_replaces_whole_files_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "doc"
    store.atomic_write_bytes(target, b"one")
    with pytest.raises(RuntimeError):
        with store.atomic_writer(target) as fh:
            fh.write(b"half of tw")
            raise RuntimeError("disk went away")
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc"]
    store.atomic_write_bytes(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_writer_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    target = tmp_path / "doc"
    store.atomic_write_bytes(target, b"x")
    target.unlink()
    target.symlink_to(victim)
    store.atomic_write_bytes(target, b"new")
    assert victim.read_bytes() == b"keep" and not target.is_symlink() and target.read_bytes() == b"new"


def test_threads_writing_one_file_never_clash(tmp_path: Path) -> None:
    target = tmp_path / "doc"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(20):
                store.atomic_write_bytes(target, str(n).encode() * 1000)
        except BaseException as exc:  # collected: pytest does not see thread exceptions
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    content = target.read_bytes()
    assert len(set(content)) == 1 and len(content) == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc"]


def test_saved_file_is_private_and_keeps_one_job_per_line(tmp_path: Path) -> None:
    path = tmp_path / "scheduler_config.json"
    cfg = SchedulerConfig()
    cfg.windows["off"] = off_hours("off")
    for n in range(3):
        cfg.jobs[f"j{n}"] = backup_job(n)
    save_config(path, cfg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert sum(1 for line in lines if line.lstrip().startswith('{"id": "j')) == 3
    assert json.loads(path.read_text()) == config_to_json(cfg)


OPS = st.lists(
    st.tuples(st.sampled_from(["add", "replace", "remove", "added_at", "enabled", "reload"]), st.integers(0, 5)),
    max_size=25,
)


@settings(deadline=None, max_examples=60)
@given(OPS)
def test_cached_encoding_always_matches_a_fresh_one(ops: list[tuple[str, int]]) -> None:
    """Whatever changes the scheduler makes (new job objects, added_at, removals, a
    reload that caches the lines as read), the bytes decode to exactly ``config_to_json``."""
    cfg = SchedulerConfig()
    path = Path("scheduler_config.json")
    for op, n in ops:
        jid = f"j{n}"
        if op == "add":
            cfg.jobs.setdefault(jid, backup_job(n))
        elif op == "replace" and jid in cfg.jobs:
            cfg.jobs[jid] = backup_job(n, priority=(cfg.jobs[jid].priority + 1) % 256)
        elif op == "remove":
            cfg.jobs.pop(jid, None)
            cfg.added_at.pop(jid, None)
        elif op == "added_at" and jid in cfg.jobs:
            cfg.added_at[jid] = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=n)
        elif op == "enabled":
            cfg.enabled = not cfg.enabled
        elif op == "reload":
            cfg = parse_config(encode_config(cfg).decode(), path)
        assert json.loads(encode_config(cfg)) == config_to_json(cfg)


def test_a_reloaded_config_saves_the_same_jobs(tmp_path: Path) -> None:
    path = tmp_path / "scheduler_config.json"
    cfg = SchedulerConfig()
    for n in range(50):
        cfg.jobs[f"j{n}"] = backup_job(n, tags=("a", "é"))
        cfg.added_at[f"j{n}"] = datetime(2026, 1, 1, tzinfo=UTC)
    save_config(path, cfg)
    loaded = load_config(path)
    save_config(path, loaded)
    again = load_config(path)
    assert again.jobs == cfg.jobs and again.added_at == cfg.added_at
    assert sorted(os.listdir(tmp_path)) == ["scheduler_config.json", "scheduler_config.json.bak"]


def test_the_sweep_leaves_a_temporary_file_being_written(tmp_path: Path) -> None:
    """``cleanup()`` beside a scheduler saving its configuration: the sweep removes only
    old temporary files (crash leftovers), never one a writer may be filling now."""
    repo = store.Repository(tmp_path / "repo")
    fresh = repo.root / ".scheduler_config.json.tmp-1-0000aaaa"
    old = repo.root / ".format.tmp-2-0000bbbb"
    fresh.write_bytes(b"being written")
    old.write_bytes(b"left by a crash")
    os.utime(old, (0, 0))
    assert repo.sweep(set()) == [old.name]
    assert fresh.exists() and not old.exists()
