"""Long chains of INCREMENTALs through the public API (issue 13): random trees whose files
change in scattered blocks, grow, shrink, appear and disappear, backed up dozens of times,
restore every chosen set byte for byte as a plain-Python oracle (the tree as it was when
the set was taken) has it; and a damaged block map anywhere in the parent chain fails the
next INCREMENTAL naming the map, without registering anything."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from engine_support import SimClock
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager
from rustybackup.errors import BackupError

BLOCKMAP_V2_TRAILER = 296


def _tree(root: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


class Chain:
    """A source tree, its repository, and the oracle: what each set must restore to."""

    def __init__(self, root: Path, seed: int, block_size: int) -> None:
        self.rnd = random.Random(seed)
        self.bs = block_size
        self.root = root
        self.src = root / "src"
        self.src.mkdir()
        self.clock = SimClock()
        self.manager = BackupManager(root / "repo", clock=self.clock)
        self.manager.register_database("db", self.src, block_size=block_size)
        self.states: dict[str, dict[str, bytes]] = {}
        self.names = 0
        for _ in range(self.rnd.randint(1, 5)):
            self._add()

    def _add(self) -> None:
        self.names += 1
        sub = self.src / f"d{self.names % 3}"
        sub.mkdir(exist_ok=True)
        size = self.rnd.choice([0, 1, self.bs - 1, self.bs, self.rnd.randint(0, 40 * self.bs)])
        (sub / f"f{self.names}.bin").write_bytes(self.rnd.randbytes(size))

    def _files(self) -> list[Path]:
        return sorted(p for p in self.src.rglob("*") if p.is_file())

    def mutate(self) -> None:
        """One hour of change: scattered blocks rewritten, and now and then a file added,
        removed, grown or cut."""
        r = self.rnd
        for p in self._files():
            data = bytearray(p.read_bytes())
            blocks = (len(data) + self.bs - 1) // self.bs
            for _ in range(r.choice([0, 0, 1, 2, 5])):
                if blocks:
                    at = r.randrange(blocks) * self.bs + r.randrange(self.bs)
                    if at < len(data):
                        data[at] ^= 1 + r.randrange(255)
            roll = r.random()
            if roll < 0.05:
                data += r.randbytes(r.randint(1, 3 * self.bs))
            elif roll < 0.08:
                del data[r.randint(0, len(data)) :]
            p.write_bytes(bytes(data))
            if r.random() < 0.04:
                p.unlink()
        if r.random() < 0.15:
            self._add()

    def backup(self, kind: str) -> str:
        self.clock.advance(minutes=1)
        s = self.manager.backup("db", kind)
        self.states[s.id] = _tree(self.src)
        return s.id

    def check(self, set_id: str) -> None:
        target = self.root / f"r-{set_id}"
        self.manager.restore("db", target, backup_set_id=set_id)
        assert _tree(target) == self.states[set_id], set_id


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32), length=st.integers(8, 40), block_size=st.sampled_from([512, 4096]))
def test_a_long_random_chain_restores_every_set_as_the_oracle_has_it(
    tmp_path_factory: pytest.TempPathFactory, seed: int, length: int, block_size: int
) -> None:
    c = Chain(tmp_path_factory.mktemp("chain"), seed, block_size)
    ids = [c.backup("full")]
    for _ in range(length):
        c.mutate()
        # Mostly INCREMENTALs; a DIFFERENTIAL now and then refers straight to the FULL.
        ids.append(c.backup("differential" if c.rnd.random() < 0.1 else "incremental"))
    for sid in {ids[-1], ids[len(ids) // 2], ids[1], *c.rnd.sample(ids, 2)}:
        c.check(sid)


def test_a_chain_of_120_incrementals_restores_its_last_set(tmp_path: Path) -> None:
    c = Chain(tmp_path, 7, 512)
    c.backup("full")
    last = ""
    for _ in range(120):
        c.mutate()
        last = c.backup("incremental")
    c.check(last)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), depth=st.integers(0, 3), pick=st.floats(0, 1, exclude_max=True))
def test_a_damaged_parent_map_fails_the_incremental_naming_it(
    tmp_path_factory: pytest.TempPathFactory, seed: int, depth: int, pick: float
) -> None:
    """One byte changed anywhere before the trailer of any map of the parent chain (the
    parent's own, or an ancestor's `depth` sets up): the next INCREMENTAL is refused with a
    BackupError naming that map, and the catalog and the earlier sets are as they were."""
    c = Chain(tmp_path_factory.mktemp("damage"), seed, 512)
    ids = [c.backup("full")]
    for _ in range(4):
        c.mutate()
        ids.append(c.backup("incremental"))
    victim = ids[-1 - depth]
    bmap = c.manager.repository / "sets" / victim / "blockmap"
    data = bytearray(bmap.read_bytes())
    at = int(pick * (len(data) - BLOCKMAP_V2_TRAILER))
    data[at] ^= 0x10
    bmap.write_bytes(bytes(data))
    before = [s.id for s in c.manager.catalog.list_sets("db")]
    c.mutate()
    c.clock.advance(minutes=1)
    with pytest.raises(BackupError) as err:
        c.manager.backup("db", "incremental")
    assert str(bmap) in str(err.value) or f"{victim}/blockmap" in str(err.value), err.value
    assert [s.id for s in c.manager.catalog.list_sets("db")] == before
    # The sets above the damage never needed it written again: those below still restore.
    for sid in ids[: len(ids) - 1 - depth]:
        c.check(sid)
