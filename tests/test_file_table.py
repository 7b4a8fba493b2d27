"""A manifest's `files` kept in Rust (`manifest.FileTable`, rust/src/format/file_table.rs):
an unchanged second backup matches the walk against the parent's rows and writes the new
rows there, without a FileEntry per file. The oracle is written here in plain Python from
`os.lstat`, `hashlib` and the parent's manifest as JSON: for random trees and random
changes, the `files` a backup writes equal what that reference says they must be, and the
files it left unread are exactly those restic's rule (size, mtime, ctime, inode, device)
keeps."""

from __future__ import annotations

import base64
import errno
import grp
import hashlib
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest
from engine_support import SimClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupType, _core, manifest
from rustybackup.errors import CatalogError
from rustybackup.manifest import FileEntry, FileTable

BLOCK = 4096


def _xattrs_work(where: Path) -> bool:
    probe = where / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()


def _name(table: Any, key: int) -> str | None:
    try:
        return str(table(key)[0])
    except KeyError:
        return None


def reference_files(src: Path, parent: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], set[str]]:
    """What the new set's `files` must hold, from the tree itself (docs/FORMAT.md), and
    which of them restic's rule leaves unread given the parent's entries (as JSON)."""
    by_path = {e["path"]: e for e in parent or []}
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for f in filenames:
            names.append(os.path.relpath(os.path.join(dirpath, f), src))
    out: list[dict[str, Any]] = []
    first_name: dict[tuple[int, int], str] = {}
    at = 0
    unread: set[str] = set()
    for rel in sorted(names):
        st_ = os.lstat(src / rel)
        if not stat.S_ISREG(st_.st_mode):
            continue
        if st_.st_nlink > 1 and first_name.setdefault((st_.st_dev, st_.st_ino), rel) != rel:
            continue  # a second name of one inode is a hardlink record, not a file
        data = (src / rel).read_bytes()
        count = -(-len(data) // BLOCK)
        e: dict[str, Any] = {
            "path": rel,
            "mode": stat.S_IMODE(st_.st_mode),
            "mtime_ns": st_.st_mtime_ns,
            "size": len(data),
            "digest": hashlib.sha256(data).hexdigest(),
            "first_block": at,
            "block_count": count,
            "owner": {
                "uid": st_.st_uid,
                "gid": st_.st_gid,
                "user": _name(pwd.getpwuid, st_.st_uid),
                "group": _name(grp.getgrgid, st_.st_gid),
            },
            "ctime_ns": st_.st_ctime_ns,
            "ino": st_.st_ino,
            "dev": st_.st_dev,
        }
        names_x = sorted(os.listxattr(src / rel, follow_symlinks=False))
        if names_x:
            e["xattrs"] = [{"name": n, "value": base64.b64encode(os.getxattr(src / rel, n)).decode()} for n in names_x]
        p = by_path.get(rel)
        if p is not None and all(
            p.get(k) == e[k] for k in ("size", "mtime_ns", "ctime_ns", "ino", "dev")
        ):  # fmt: skip
            unread.add(rel)
        out.append(e)
        at += count
    return out, unread


def written_files(repo: Path, set_id: str) -> list[dict[str, Any]]:
    doc = json.loads((repo / "sets" / set_id / "manifest.json").read_text())
    return list(doc["files"])


CHANGES = st.lists(
    st.tuples(
        st.sampled_from(["rewrite", "resize", "touch", "chmod", "add", "delete", "xattr", "hardlink", "same"]),
        st.integers(0, 50),
    ),
    max_size=6,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(0, 3 * BLOCK + 7), min_size=0, max_size=12),
    changes=CHANGES,
    force=st.booleans(),
)
def test_written_rows_equal_the_plain_python_reference(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], changes: list[tuple[str, int]], force: bool
) -> None:
    work = tmp_path_factory.mktemp("ft")
    src, repo = work / "src", work / "repo"
    xattrs = _xattrs_work(work)
    for i, size in enumerate(sizes):
        p = src / f"d{i % 3}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
    src.mkdir(exist_ok=True)
    m = BackupManager(repo, clock=SimClock())
    m.register_database("t", src, block_size=BLOCK, algorithm="sha256")
    full = m.backup("t", BackupType.FULL)
    want, _ = reference_files(src, None)
    assert written_files(repo, full.id) == want
    parent = written_files(repo, full.id)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for kind, k in changes:
        victim = files[k % len(files)] if files else None
        if kind == "add" or victim is None or not victim.exists():
            (src / f"new{k}").write_bytes(os.urandom(k * 97))
        elif kind == "rewrite":
            victim.write_bytes(os.urandom(victim.stat().st_size))
        elif kind == "resize":
            victim.write_bytes(os.urandom(k * 131))
        elif kind == "touch":
            os.utime(victim, ns=(0, victim.stat().st_mtime_ns + 1_000_000_007))
        elif kind == "chmod":
            victim.chmod(0o600 if victim.stat().st_mode & 0o044 else 0o644)
        elif kind == "delete":
            victim.unlink()
        elif kind == "xattr" and xattrs:
            os.setxattr(victim, f"user.k{k}", os.urandom(k))
        elif kind == "hardlink":
            target = src / f"link{k}"
            if not target.exists():
                os.link(victim, target)
    inc = m.backup("t", BackupType.INCREMENTAL, force_read=force)
    want, unread = reference_files(src, parent)
    assert written_files(repo, inc.id) == want
    if force:
        unread = set()
    assert m.summary(inc.id).unread == len(unread)
    assert inc.bytes_read == sum(e["size"] for e in want if e["path"] not in unread)
    # Read back through the table: the same entries a whole-document parse gives.
    text = (repo / "sets" / inc.id / "manifest.json").read_bytes()
    table = manifest.loads(text).files
    assert isinstance(table, FileTable)
    assert tuple(table) == manifest.parse(json.loads(text)).files
    assert [table[i] for i in range(len(table))] == list(table)


def _entry(i: int) -> dict[str, Any]:
    return {
        "path": f"d/f{i}",
        "mode": 0o644,
        "mtime_ns": -i,
        "size": 10,
        "digest": "ab" * 32,
        "first_block": 3 * i,
        "block_count": 3,
        "owner": {"uid": i, "gid": 0, "user": None, "group": "g"},
        "ctime_ns": i,
        "ino": i,
        "dev": 1,
    }


def _doc(entries: list[Any]) -> bytes:
    return json.dumps({"set": {"algorithm": "sha256"}, "files": entries}).encode()


def test_the_table_holds_rows_and_hands_back_the_rest() -> None:
    odd = {**_entry(1), "xattrs": [{"name": "user.a", "value": "AA=="}]}
    doc = _doc([_entry(0), odd, _entry(2)])
    split = _core.split_manifest_table(doc)
    assert split is not None
    rows, raw, rest, at = split
    assert at is not None and json.loads(doc[at[0] : at[1]]) == json.loads(doc)["files"]
    assert rows is not None and len(rows) == 3
    assert [i for i, _ in raw] == [1]
    assert json.loads(rest) == {"set": {"algorithm": "sha256"}}
    assert rows.row(2)[:7] == ("d/f2", 0o644, -2, 10, "ab" * 32, 6, 3)
    assert rows.row(0)[7] == (0, 0, None, "g")
    assert rows.check_blocks(4) == (0, (1, "first_block", 3))  # the placeholder row 1
    rows.put(1, ("d/f1", 0o644, -1, 10, "ab" * 32, 3, 3, None, 1, 1, 1))
    assert rows.check_blocks(4) == (9, None)
    assert rows.check_blocks(2) == (0, (0, "block_count", 5))
    with pytest.raises(IndexError):
        rows.row(3)
    with pytest.raises(IndexError):
        rows.put(3, ("x", 0, 0, 0, "", 0, 0, None, None, None, None))
    assert rows.rows(2, 99) == [rows.row(2)] and rows.rows(5, 1) == []
    # A row written back reads as the same row.
    again = _core.split_manifest_table(b'{"set":{"algorithm":"sha256"},"files":' + rows.to_json({}).encode() + b"}")
    assert again is not None and again[0] is not None
    assert again[0].rows(0, 3) == rows.rows(0, 3) and again[1] == []


def test_a_damaged_entry_is_named_as_before(tmp_path: Path) -> None:
    bad = {**_entry(1), "size": "x"}
    doc = json.loads(_doc([_entry(0), bad]))
    with pytest.raises(CatalogError, match=r"files\[1\]\.size: expected a non-negative integer, got 'x'"):
        manifest._Parser("m").files(manifest._decode(json.dumps(doc), "m")["files"], "sha256")  # type: ignore[index]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "path": st.text(st.characters(blacklist_characters="/\0"), min_size=1, max_size=6).filter(
                    lambda s: s not in (".", "..")
                ),
                "mode": st.integers(0, 0o7777),
                "mtime_ns": st.integers(-(1 << 63), (1 << 63) - 1),
                "size": st.integers(0, 1 << 40),
                "digest": st.just("0f" * 32),
                "first_block": st.integers(0, 1 << 40),
                "block_count": st.integers(0, 1 << 40),
            },
            optional={
                "owner": st.fixed_dictionaries(
                    {"uid": st.integers(0, 2**32 - 1), "gid": st.integers(0, 2**32 - 1)},
                    optional={"user": st.none() | st.text(min_size=1, max_size=4).filter(lambda s: "\0" not in s)},
                ),
                "ctime_ns": st.integers(-(1 << 63), (1 << 63) - 1),
                "ino": st.integers(0, 2**64 - 1),
                "dev": st.integers(0, 2**64 - 1),
            },
        ),
        max_size=8,
    )
)
def test_table_entries_equal_a_whole_document_parse(entries: list[dict[str, Any]]) -> None:
    """Whatever mix of rows and entries Python parses, the table yields the same
    `FileEntry` objects as json whole, and writes JSON that reads back the same."""
    p = manifest._Parser("m")
    table = p.files(manifest._decode(_doc(entries), "m")["files"], "sha256")  # type: ignore[index]
    whole = p.files(entries, "sha256")
    lone = any(0xD800 <= ord(c) <= 0xDFFF for e in entries for c in e["path"])
    # A name that is not UTF-8 (kept as lone surrogates) has no Rust string: such a
    # document is parsed by json whole, into the same entries.
    assert isinstance(table, FileTable) != lone
    assert tuple(table) == whole and tuple(table) == tuple(whole)
    if not lone:
        assert isinstance(table, FileTable)
        again = p.files(json.loads(table.json()), "sha256")
        assert again == whole
        assert table.paths() == [e.path for e in whole]
        # The whole document spliced in Rust reads as json's own writing of it.
        rest = {"set": {"algorithm": "sha256"}, "z": "\u00e9"}
        doc = table.document(json.dumps(rest, ensure_ascii=False, separators=(",", ":")).encode())
        assert doc.endswith(b"}\n") and doc.count(b"\n") == 1
        assert json.loads(doc) == {**rest, "files": json.loads(table.json())}


def test_the_document_splices_the_rows_into_any_object_and_refuses_the_rest() -> None:
    split = _core.split_manifest_table(_doc([_entry(0), _entry(1)]))
    assert split is not None and split[0] is not None
    rows = split[0]
    files = json.loads(rows.to_json({}))
    assert json.loads(rows.document(b"{}", {})) == {"files": files}
    assert json.loads(rows.document(b'{"a":1}\n', {})) == {"a": 1, "files": files}
    assert json.loads(rows.document(b'{ "a" : [1] }  ', {1: '{"x":2}'})) == {"a": [1], "files": [files[0], {"x": 2}]}
    for bad in (b"", b"[]", b"{", b"}", b'"a"', b"\xff{}"):
        with pytest.raises(ValueError, match="not a JSON object"):
            rows.document(bad, {})


def test_a_row_built_from_the_walk_matches_only_when_every_field_does(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"x" * 10)
    st_ = os.lstat(f)
    walked = [("a", f, st_), ("b", tmp_path / "b", st_)]
    made = _core.FileTable.from_pass(walked[:1], [(10, "ab" * 32, 0, 1)], set(), {}, {})
    assert made is not None
    row = made.row(0)
    assert row[7] == (st_.st_uid, st_.st_gid, None, None)
    assert row[8:] == (st_.st_ctime_ns, st_.st_ino, st_.st_dev)
    ranges, same = made.match_walk(walked, True)
    identity = (st_.st_mtime_ns, st_.st_ctime_ns, st_.st_ino, st_.st_dev)
    assert ranges == [(0, 1), None] and same == [(0, 10, "ab" * 32, *identity)]
    assert made.match_walk(walked, False) == ([(0, 1), None], [])
    changed = _core.FileTable.from_pass(walked[:1], [(10, "ab" * 32, 0, 1)], {"a"}, {}, {})
    assert changed is not None and changed.row(0)[8:] == (None, None, None)
    assert changed.match_walk(walked, True)[1] == []
    # A name that is not UTF-8 is left to the Python path.
    odd = os.fsdecode(b"\xff")
    assert _core.FileTable.from_pass([(odd, f, st_)], [(10, "ab" * 32, 0, 1)], set(), {}, {}) is None
    with pytest.raises(ValueError, match="1 files but 0 results"):
        _core.FileTable.from_pass(walked[:1], [], set(), {}, {})
    assert isinstance(FileTable(made)[0], FileEntry) and FileTable(made)[-1] == FileTable(made)[0]
