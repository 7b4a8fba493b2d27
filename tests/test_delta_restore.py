"""Delta restore into an existing tree (pgBackRest's --delta): files whose contents match
are left alone (same inode, same ctime), changed blocks are rewritten in place, extra
entries are removed only with --delete, and without --delta a non-empty target is
refused. Links in the target are replaced, never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fidelity_support import ACL_GROUP_OBJ, ACL_OTHER, ACL_UNDEFINED_ID, ACL_USER_OBJ, acl, snapshot, sparse_file
from rustybackup import BackupError, BackupManager
from rustybackup.restore import RestoreOptions

BLOCK = 64 << 10


def setup(tmp_path: Path) -> tuple[BackupManager, Path, Path]:
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "same").write_bytes(os.urandom(5 * BLOCK))
    (src / "big").write_bytes(os.urandom(20 * BLOCK + 17))
    (src / "d" / "f").write_bytes(b"small")
    (src / "d" / "link").symlink_to("../same")
    sparse_file(src / "d" / "sparse", [("data", 4096), ("hole", 1 << 20), ("data", 100)])
    os.link(src / "same", src / "d" / "e" / "samelink")
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src, block_size=BLOCK)
    m.backup("t", "full")
    out = tmp_path / "out"
    m.restore("t", out)
    return m, src, out


def test_a_non_empty_target_is_refused_without_delta(tmp_path: Path) -> None:
    m, _, out = setup(tmp_path)
    with pytest.raises(BackupError, match="must be absent or an empty directory.*--delta"):
        m.restore("t", out)


def test_matching_files_are_left_alone_and_changed_blocks_rewritten_in_place(tmp_path: Path) -> None:
    m, src, out = setup(tmp_path)
    before = {n: os.stat(out / n) for n in ("same", "big", "d/f")}
    # Damage one block in the middle of big and shorten d/f: both differ from the set.
    with open(out / "big", "r+b") as fh:
        fh.seek(7 * BLOCK + 5)
        fh.write(b"XXXX")
    (out / "d" / "f").write_bytes(b"sm")
    (out / "extra").write_bytes(b"not in the set")
    res = m.restore("t", out, options=RestoreOptions(delta=True))
    assert snapshot(out / "d") == snapshot(src / "d")
    after = {n: os.stat(out / n) for n in ("same", "big", "d/f")}
    # Untouched: same inode, same ctime (nothing at all was written to it).
    assert after["same"].st_ino == before["same"].st_ino
    assert after["same"].st_ctime_ns == before["same"].st_ctime_ns
    # Rewritten in place: the same inode, its bytes right again.
    assert after["big"].st_ino == before["big"].st_ino
    assert (out / "big").read_bytes() == (src / "big").read_bytes()
    assert res.report.files_unchanged >= 2 and res.report.files_written == 2
    assert res.report.bytes_written == BLOCK + 5  # one block of big, d/f's 5 bytes
    assert (out / "extra").exists() and res.report.removed == []


def test_delete_removes_what_the_set_does_not_hold(tmp_path: Path) -> None:
    m, src, out = setup(tmp_path)
    (out / "extra").write_bytes(b"x")
    (out / "d" / "newdir" / "deep").mkdir(parents=True)
    (out / "d" / "newdir" / "deep" / "f").write_bytes(b"x")
    res = m.restore("t", out, options=RestoreOptions(delta=True, delete=True))
    assert snapshot(out) == snapshot(src)
    assert sorted(res.report.removed) == ["d/newdir", "extra"]


def test_wrong_kinds_in_the_target_are_replaced_never_followed(tmp_path: Path) -> None:
    m, src, out = setup(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"must stay")
    # A link where directory d belongs, pointing outside; a directory where a file is.
    os.rename(out / "d", tmp_path / "old_d")
    (out / "d").symlink_to(outside)
    (out / "same").unlink()
    (out / "same").mkdir()
    (out / "same" / "x").write_bytes(b"x")
    m.restore("t", out, options=RestoreOptions(delta=True))
    assert snapshot(out) == snapshot(src)
    assert (outside / "f").read_bytes() == b"must stay" and sorted(os.listdir(outside)) == ["f"]


def test_a_file_restored_in_place_gets_its_holes_back(tmp_path: Path) -> None:
    m, src, out = setup(tmp_path)
    (out / "d" / "sparse").write_bytes((src / "d" / "sparse").read_bytes().replace(b"\0", b"\1"))
    m.restore("t", out, options=RestoreOptions(delta=True))
    assert (out / "d" / "sparse").read_bytes() == (src / "d" / "sparse").read_bytes()
    assert os.stat(out / "d" / "sparse").st_blocks <= os.stat(src / "d" / "sparse").st_blocks


def test_a_file_hardlinked_in_the_target_only_is_not_written_through_its_other_name(tmp_path: Path) -> None:
    m, src, out = setup(tmp_path)
    # In the target, d/f became another name of big (not so in the set): rewriting d/f
    # in place would change big's bytes too.
    (out / "d" / "f").unlink()
    os.link(out / "big", out / "d" / "f")
    m.restore("t", out, options=RestoreOptions(delta=True))
    assert (out / "d" / "f").read_bytes() == b"small"
    assert (out / "big").read_bytes() == (src / "big").read_bytes()
    assert os.stat(out / "big").st_nlink == 1


def test_a_hardlink_group_already_right_is_left_alone(tmp_path: Path) -> None:
    m, _, out = setup(tmp_path)
    before = os.stat(out / "same")
    assert before.st_nlink == 2
    m.restore("t", out, options=RestoreOptions(delta=True))
    after = os.stat(out / "same")
    assert (after.st_ino, after.st_ctime_ns, after.st_nlink) == (before.st_ino, before.st_ctime_ns, 2)


def test_xattrs_the_set_does_not_hold_are_removed_and_default_acls_not_inherited(tmp_path: Path) -> None:
    m, src, out = setup(tmp_path)
    os.setxattr(out / "d" / "f", "user.stray", b"left in the target")
    # A default ACL on d/e (not in the set) would make a new file in it inherit an ACL.
    os.setxattr(
        out / "d" / "e",
        "system.posix_acl_default",
        acl(
            [
                (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
                (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
                (ACL_OTHER, 0, ACL_UNDEFINED_ID),
            ]
        ),
    )
    (out / "d" / "e" / "samelink").unlink()
    m.restore("t", out, options=RestoreOptions(delta=True))
    assert snapshot(out) == snapshot(src)
