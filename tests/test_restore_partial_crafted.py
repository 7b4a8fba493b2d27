"""A restore never writes outside its target, whatever the manifest says: names with
``..``, absolute names, hardlinks to paths outside the set, specials and entries below a
link are refused with an error naming the field, and nothing is written anywhere."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from manifest_support import stored
from rustybackup import BackupError, BackupManager, CatalogError, manifest
from rustybackup.manifest import HardlinkEntry, SpecialEntry, SymlinkEntry
from rustybackup.restore import restore_set_files


def made(tmp_path: Path) -> tuple[BackupManager, Path]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a").write_bytes(b"a" * 100)
    (src / "d" / "b").write_bytes(b"b")
    os.link(src / "a", src / "d" / "hard")
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    s = m.backup("t", "full")
    return m, tmp_path / "repo" / "sets" / s.id / "manifest.json"


def tamper(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_bytes(stored(doc))


CASES = {
    "dotdot file": (lambda d: d["files"][0].update(path="../evil"), r"files\[0\]\.path.*escape"),
    "absolute file": (lambda d: d["files"][0].update(path="/tmp/evil"), r"files\[0\]\.path.*escape"),
    "hardlink out": (lambda d: d["hardlinks"][0].update(path="../../x"), r"hardlinks\[0\]\.path.*escape"),
    "hardlink to outside": (lambda d: d["hardlinks"][0].update(target="../a"), r"hardlinks\[0\]\.target.*escape"),
    "hardlink to a non-file": (
        lambda d: d["hardlinks"][0].update(target="d"),
        r"hardlinks\[0\]\.target.*not a regular file",
    ),
    "special out": (
        lambda d: d["specials"].append({"path": "d/../../x", "kind": "fifo", "mode": 0o644, "mtime_ns": 0}),
        r"specials\[0\]\.path.*escape",
    ),
    "special kind": (
        lambda d: d["specials"].append({"path": "p", "kind": "socket", "mode": 0o644, "mtime_ns": 0}),
        r"specials\[0\]\.kind",
    ),
    "under a link": (
        lambda d: d["symlinks"].append({"path": "d", "target": "/etc", "mtime_ns": 0}),
        r"listed twice|not a directory",
    ),
    "hole past the end": (lambda d: d["files"][0].update(holes=[[50, 100]]), r"files\[0\]\.holes\[0\]"),
    "xattr not base64": (
        lambda d: d["files"][0].update(xattrs=[{"name": "user.x", "value": "!!"}]),
        r"xattrs\[0\]\.value",
    ),
    "owner id": (lambda d: d["files"][0].update(owner={"uid": -1, "gid": 0}), r"owner\.uid"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_crafted_manifest_is_refused_before_anything_is_written(tmp_path: Path, case: str) -> None:
    m, path = made(tmp_path)
    change, message = CASES[case]
    tamper(path, change)
    out = tmp_path / "out"
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(CatalogError, match=message):
        m.restore("t", out)
    assert not out.exists() or os.listdir(out) == []
    assert set(os.listdir(tmp_path)) <= {*before, "out"}


def test_entries_built_in_code_cannot_leave_the_target_either(tmp_path: Path) -> None:
    """The last check is RestoreTarget's, on every name reaching a system call: a
    manifest that skipped the parser (built in code) still cannot escape."""
    m, path = made(tmp_path)
    man = manifest.load(path)
    sid = man.id
    bad = [
        replace(man, hardlinks=(HardlinkEntry("../escaped", "a"),)),
        replace(man, specials=(SpecialEntry("../fifo", "fifo", 0o644, 0),)),
        replace(man, symlinks=(SymlinkEntry("../link", "/etc", 0),)),
    ]
    for i, crafted in enumerate(bad):
        out = tmp_path / f"out{i}"
        out.mkdir()
        with pytest.raises(BackupError, match="would leave the restore target"):
            restore_set_files(tmp_path / "repo", sid, crafted, out, None, archive=False)
        assert not (tmp_path / "escaped").exists() and not (tmp_path / "fifo").exists()
        assert not (tmp_path / "link").exists()


def test_a_link_planted_in_the_target_is_not_followed_by_a_partial_delta_restore(tmp_path: Path) -> None:
    m, path = made(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "d").symlink_to(outside)
    m.restore_files(manifest.load(path).id, ["d/"], out, delta=True)
    assert os.listdir(outside) == []
    assert (out / "d").is_dir() and not (out / "d").is_symlink()
    assert (out / "d" / "b").read_bytes() == b"b"
