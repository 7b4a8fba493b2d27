"""Retention against real backups: after apply_retention, every set it kept still restores
byte for byte, every point inside a recovery window still restores to the content it had
then, nothing kept depends on a deleted set, and applying again deletes nothing more."""

from __future__ import annotations

import random
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from engine_support import SimClock
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupType, RetentionPolicy
from rustybackup.testing import retention_policies

BLOCK = 4096
KINDS = st.sampled_from([BackupType.FULL, BackupType.INCREMENTAL, BackupType.DIFFERENTIAL])


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[BackupType, int, int]]:
    """(backup type, hours since the previous backup, seed of the edit before it)."""
    steps = draw(st.lists(st.tuples(KINDS, st.integers(1, 72), st.integers(0, 2**32 - 1)), min_size=1, max_size=8))
    return steps


def _edit(content: bytearray, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(rng.randint(1, 3)):
        block = rng.randrange(max(1, len(content) // BLOCK) + 1)
        content[block * BLOCK : block * BLOCK + 16] = rng.randbytes(16)


@settings(max_examples=25)
@given(histories(), retention_policies(max_redundancy=3, max_window=timedelta(days=10), max_count=4))
def test_what_retention_keeps_still_restores_byte_for_byte(
    history: list[tuple[BackupType, int, int]], policy: RetentionPolicy
) -> None:
    work = Path(tempfile.mkdtemp(prefix="rb-retention-"))
    try:
        clock = SimClock()
        manager = BackupManager(work / "repo", clock=clock)
        src = work / "src"
        src.mkdir()
        content = bytearray(random.Random(0).randbytes(5 * BLOCK))
        manager.register_database("db", src, block_size=BLOCK)
        taken: dict[str, bytes] = {}
        finished = []
        for kind, hours, seed in history:
            clock.advance(hours=hours)
            _edit(content, seed)
            (src / "data").write_bytes(bytes(content))
            s = manager.backup("db", kind)
            taken[s.id] = bytes(content)
            finished.append((s.finished_at, s.id))
        clock.advance(hours=1)

        window = policy.window
        promised = [] if window is None else [t for t, _ in finished if t >= clock.now - window]
        before = {t: [s.id for s in manager.catalog.find_recovery_path("db", until=t)] for t in promised}

        deleted = manager.apply_retention("db", policy, dry_run=False)
        kept = {s.id for s in manager.catalog.list_sets(database="db")}
        assert kept == set(taken) - set(deleted)
        assert kept, "retention must never delete the last usable FULL"
        for s in manager.catalog.list_sets(database="db"):
            assert s.parent_id is None or s.parent_id in kept, f"{s.id} depends on deleted {s.parent_id}"
        for i, set_id in enumerate(sorted(kept)):
            out = work / f"out-{i}"
            manager.restore("db", out, backup_set_id=set_id)
            assert (out / "data").read_bytes() == taken[set_id]
        for t in promised:
            assert [s.id for s in manager.catalog.find_recovery_path("db", until=t)] == before[t]
        assert manager.apply_retention("db", policy, dry_run=False) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)
