"""Stateful property test: random edits to a source tree, random backup types on a
simulated clock, and restores at random past instants compared byte for byte with the
model's snapshot at that instant."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from engine_support import SimClock
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from rustybackup import BackupManager, BackupType

BLOCK = 512
NAMES = st.sampled_from(["a", "b", "c", "d0/e", "d0/f", "d1/g", "d0/d2/h"])
DIRS = st.sampled_from(["d0", "d1", "d0/d2", "d3"])
DATA = st.binary(max_size=3 * BLOCK + 100)


class TreeModel(RuleBasedStateMachine):
    """The model is a dict of file contents plus a set of directories."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rb-stateful-"))
        self.src = self.tmp / "src"
        self.src.mkdir()
        self.clock = SimClock()
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self.snapshots: list[tuple[datetime, dict[str, bytes], frozenset[str]]] = []
        self.restores = 0

    @initialize(compression=st.sampled_from([None, "zstd"]), algorithm=st.sampled_from(["blake3", "sha256"]))
    def open_repo(self, compression: str | None, algorithm: str) -> None:
        self.manager = BackupManager(self.tmp / "repo", clock=self.clock)
        self.manager.register_database("tree", self.src, block_size=BLOCK, algorithm=algorithm, compression=compression)

    def _parents(self, rel: str) -> None:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dirs.add("/".join(parts[:i]))
        (self.src / rel).parent.mkdir(parents=True, exist_ok=True)

    @rule(name=NAMES, data=DATA)
    def create_or_replace(self, name: str, data: bytes) -> None:
        if any(d == name for d in self.dirs):
            return
        self._parents(name)
        (self.src / name).write_bytes(data)
        self.files[name] = data

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data(), patch=st.binary(min_size=1, max_size=BLOCK))
    def overwrite_block(self, data: st.DataObject, patch: bytes) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        old = self.files[name]
        at = data.draw(st.integers(0, len(old)))
        new = old[:at] + patch + old[at + len(patch) :]
        (self.src / name).write_bytes(new)
        self.files[name] = new

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data(), more=st.binary(min_size=1, max_size=2 * BLOCK))
    def append(self, data: st.DataObject, more: bytes) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        with open(self.src / name, "ab") as fh:
            fh.write(more)
        self.files[name] += more

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        size = data.draw(st.integers(0, len(self.files[name])))
        with open(self.src / name, "r+b") as fh:
            fh.truncate(size)
        self.files[name] = self.files[name][:size]

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data())
    def delete_file(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        (self.src / name).unlink()
        del self.files[name]

    @rule(d=DIRS)
    def make_dir(self, d: str) -> None:
        if d in self.files or any(f == d.split("/")[0] for f in self.files):
            return
        self._parents(d + "/x")
        self.dirs.add(d)

    @precondition(lambda self: bool(self.dirs))
    @rule(data=st.data())
    def remove_dir(self, data: st.DataObject) -> None:
        d = data.draw(st.sampled_from(sorted(self.dirs)))
        shutil.rmtree(self.src / d)
        self.dirs = {x for x in self.dirs if x != d and not x.startswith(d + "/")}
        self.files = {f: v for f, v in self.files.items() if not f.startswith(d + "/")}

    @rule(kind=st.sampled_from(list(BackupType)), minutes=st.integers(1, 600))
    def backup(self, kind: BackupType, minutes: int) -> None:
        self.clock.advance(minutes=minutes)
        if kind is BackupType.ARCHIVE_LOG:
            return  # no archive_dir on this source; covered elsewhere
        s = self.manager.backup("tree", kind)
        assert s.finished_at == self.clock.now
        self.snapshots.append((s.finished_at, dict(self.files), frozenset(self.dirs)))

    @precondition(lambda self: bool(self.snapshots))
    @rule(data=st.data())
    def restore_past_instant(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.snapshots) - 1))
        at, files, dirs = self.snapshots[i]
        # Any instant from this set's finish until just before the next one's.
        nxt = self.snapshots[i + 1][0] if i + 1 < len(self.snapshots) else at + timedelta(days=1)
        gap = int((nxt - at) / timedelta(microseconds=1))
        until = at + timedelta(microseconds=data.draw(st.integers(0, max(gap - 1, 0))))
        target = self.tmp / f"restore-{self.restores}"
        self.restores += 1
        self.manager.restore("tree", target, until=until)
        got_files = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
        got_dirs = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_dir()}
        assert got_files == files
        assert got_dirs == set(dirs)
        shutil.rmtree(target)

    @invariant()
    def catalog_lists_every_backup(self) -> None:
        if hasattr(self, "manager"):
            assert len(self.manager.catalog.list_sets()) == len(self.snapshots)

    def teardown(self) -> None:
        if hasattr(self, "manager"):
            self.manager.catalog.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TreeModel.TestCase.settings = settings(settings(), max_examples=25, stateful_step_count=30)
test_backup_restore_state_machine = TreeModel.TestCase
