"""The walk of an INCREMENTAL does not list the extended attributes of a file that is
unchanged since the parent set (restic's rule, dedup.py) and had none there: setting or
removing an attribute, an ACL included, moves the ctime. Every file the parent recorded
attributes for, or could not read them of, is listed again; a changed file always is.
The oracle is the tree itself (os.listxattr / os.getxattr) and its restore."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import SimClock, snapshot_tree
from rustybackup import BackupManager, BackupType, _core, dedup
from rustybackup.manifest import FileTable, Summary
from rustybackup.sources import SkippedEntry


@pytest.fixture
def manager(tmp_path: Path) -> BackupManager:
    return BackupManager(tmp_path / "repo", clock=SimClock())


def xattrs_of(m: BackupManager, set_id: str) -> dict[str, dict[str, bytes]]:
    return {f.path: {x.name: x.value for x in f.xattrs} for f in m.set_manifest(set_id).files if f.xattrs}


def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("plain", "tagged", "later"):
        (src / name).write_bytes(name.encode() * 1000)
    os.setxattr(src / "tagged", "user.kept", b"from the start")
    return src


def test_a_bare_row_with_its_identity_leaves_the_attributes_unasked(tmp_path: Path) -> None:
    """The mechanism, with a table that claims the file unchanged and bare although it
    has an attribute now (a state a real tree cannot reach: here the table is made from
    the file's current lstat): the walk does not ask, unless the path is in `reread`."""
    src = tmp_path / "src"
    src.mkdir()
    f = src / "f"
    f.write_bytes(b"x" * 100)
    os.setxattr(f, "user.note", b"v")
    st = os.lstat(f)
    table = _core.FileTable.from_pass([("f", str(f), st)], [(100, "00" * 32, 0, 1)], set(), {}, {})
    assert table is not None

    def walked(**kw: object) -> dict[str, tuple[tuple[str, bytes], ...]]:
        entries, _, _ = _core.walk_tree(src, **kw)  # type: ignore[arg-type]
        return {rel: xattrs for rel, kind, _, _, xattrs, _ in entries if kind == "file"}

    assert walked() == {"f": (("user.note", b"v"),)}
    assert walked(known=table) == {"f": ()}
    assert walked(known=table, reread={"f"}) == {"f": (("user.note", b"v"),)}
    # Any part of the identity different: asked again.
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert walked(known=table) == {"f": (("user.note", b"v"),)}


def test_attributes_survive_unchanged_incrementals_and_new_ones_are_seen(
    manager: BackupManager, tmp_path: Path
) -> None:
    src = tree(tmp_path)
    manager.register_database("t", src)
    full = manager.backup("t", BackupType.FULL)
    assert xattrs_of(manager, full.id) == {"tagged": {"user.kept": b"from the start"}}
    # Unchanged: the parent's attributes are listed again (its entry has some).
    inc = manager.backup("t", BackupType.INCREMENTAL)
    assert manager.summary(inc.id).unread == 3
    assert xattrs_of(manager, inc.id) == {"tagged": {"user.kept": b"from the start"}}
    # Set on a file the parent recorded bare: its ctime moved, so the walk asks.
    os.setxattr(src / "later", "user.new", b"added after the full")
    os.removexattr(src / "tagged", "user.kept")
    inc2 = manager.backup("t", BackupType.INCREMENTAL)
    assert xattrs_of(manager, inc2.id) == {"later": {"user.new": b"added after the full"}}
    out = tmp_path / "out"
    manager.restore("t", out, backup_set_id=inc2.id)
    assert snapshot_tree(out) == snapshot_tree(src)
    assert os.getxattr(out / "later", "user.new") == b"added after the full"
    assert "user.kept" not in os.listxattr(out / "tagged")
    shutil.rmtree(out)


def test_the_parents_xattr_rows_and_skipped_paths_are_reread(manager: BackupManager, tmp_path: Path) -> None:
    src = tree(tmp_path)
    manager.register_database("t", src)
    full = manager.backup("t", BackupType.FULL)
    parent = manager.set_manifest(full.id)
    assert isinstance(parent.files, FileTable)
    known = dedup.known_files(parent)
    assert known is not None and known.reread == {"tagged"}
    # A path the parent could not read an attribute of is reported again by the child.
    reported = replace(parent, summary=Summary(skipped=(SkippedEntry("plain", "extended attribute x cannot be read"),)))
    again = dedup.known_files(reported)
    assert again is not None and again.reread == {"tagged", "plain"}
    # Files parsed in Python (not a FileTable): nothing is left unasked.
    assert dedup.known_files(replace(parent, files=tuple(parent.files))) is None
