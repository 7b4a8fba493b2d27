"""The walk's order (`_core.walk_tree`): the root's subdirectories are walked on the
pool, each into its own part, and joined in their order, so the entries come out exactly
as one serial walk lists them: a directory's names sorted by bytes, then the contents
of each of its subdirectories in that order, depth first. Oracle: a recursive listing in Python."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core


def _depth_first(root: Path, prefix: bytes = b"") -> list[bytes]:
    names = sorted(os.fsencode(n) for n in os.listdir(root))
    out = [prefix + n for n in names]
    for name in names:
        full = root / os.fsdecode(name)
        if full.is_dir() and not full.is_symlink():
            out.extend(_depth_first(full, prefix + name + b"/"))
    return out


@settings(deadline=None, max_examples=30)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "B", "é", "z0", "0"]), min_size=1, max_size=4), max_size=25))
def test_entries_come_in_one_depth_first_walks_order(paths: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for parts in paths:
            path = root.joinpath(*parts)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x") if len(parts) % 2 else path.mkdir(exist_ok=True)
            except OSError:
                continue  # a name taken by a file or a directory already
        entries, skipped, _ = _core.walk_tree(root)
        assert skipped == []
        assert [os.fsencode(e[0]) for e in entries] == _depth_first(root)


def test_skips_and_exclusions_from_every_part_are_kept(tmp_path: Path) -> None:
    for top in ("a", "b", "c"):
        (tmp_path / top / "keep").mkdir(parents=True)
        (tmp_path / top / "drop.tmp").write_bytes(b"")
        os.mkfifo(tmp_path / top / "fifo")
    matcher = _core.PathMatcher(["*.tmp"])
    entries, skipped, excluded = _core.walk_tree(tmp_path, matcher)
    assert excluded == 3
    assert [e[0] for e in entries if e[1] == "special"] == ["a/fifo", "b/fifo", "c/fifo"]
    assert skipped == []
