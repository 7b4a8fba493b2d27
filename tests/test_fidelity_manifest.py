"""Manifest format 2's file-tree records (docs/FORMAT.md "Manifest format 2"): random
valid documents written straight from the spec round-trip through manifest.py exactly,
and damaged ones are a CatalogError naming the field, never another exception."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import CatalogError, manifest
from test_manifest import manifests

_owner = st.fixed_dictionaries(
    {
        "uid": st.integers(0, 0xFFFFFFFF),
        "gid": st.integers(0, 0xFFFFFFFF),
        "user": st.one_of(st.none(), st.text(min_size=1, max_size=8).filter(lambda s: "\0" not in s)),
        "group": st.one_of(st.none(), st.text(min_size=1, max_size=8).filter(lambda s: "\0" not in s)),
    }
)
_xattrs = st.lists(
    st.tuples(st.sampled_from(["user.a", "user.b", "trusted.x", "system.posix_acl_access"]), st.binary(max_size=30)),
    unique_by=lambda t: t[0],
    max_size=3,
).map(lambda xs: [{"name": n, "value": base64.b64encode(v).decode()} for n, v in xs])


@st.composite
def format2(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(manifests())
    doc["format"] = 2
    archive = doc["set"]["backup_type"] == "archive_log"
    for group in ("files", "dirs", "symlinks"):
        for e in doc[group]:
            if archive:
                continue
            if draw(st.booleans()):
                e["owner"] = draw(_owner)
            xs = draw(_xattrs)
            if xs:
                e["xattrs"] = xs
    for f in doc["files"]:
        size, holes, at = f["size"], [], 0
        for _ in range(draw(st.integers(0, 3))):
            if at >= size:
                break
            off = draw(st.integers(at, size - 1))
            length = draw(st.integers(1, size - off))
            holes.append([off, length])
            at = off + length
        if holes and not archive:
            f["holes"] = holes
    names = {e["path"] for g in ("files", "dirs", "symlinks") for e in doc[g]}
    files = [f["path"] for f in doc["files"]]
    doc["hardlinks"], doc["specials"] = [], []
    if not archive:
        for i in range(draw(st.integers(0, 3)) if files else 0):
            doc["hardlinks"].append({"path": f"h{i}", "target": draw(st.sampled_from(files))})
        for i in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["fifo", "char", "block"]))
            s = {"path": f"s{i}", "kind": kind, "mode": draw(st.integers(0, 0o7777)), "mtime_ns": 0}
            s |= {"major": draw(st.integers(0, 4095)), "minor": draw(st.integers(0, 1 << 20))}
            if draw(st.booleans()):
                s["owner"] = draw(_owner)
            doc["specials"].append(s)
    assert not names & {e["path"] for e in doc["hardlinks"] + doc["specials"]}
    return doc


@settings(deadline=None, max_examples=200)
@given(doc=format2())
def test_a_format_2_document_round_trips_exactly(doc: dict[str, Any]) -> None:
    m = manifest.loads(json.dumps(doc))
    assert m.dump() == doc
    by_path = {f.path: f for f in m.files}
    for h in m.hardlinks:
        assert h.target in by_path


@st.composite
def format3(draw: st.DrawFn) -> dict[str, Any]:
    """Format 2 plus what format 3 adds: the source directory's own record and other
    names of special files."""
    doc = draw(format2())
    doc["format"] = 3
    if doc["set"]["backup_type"] == "archive_log":
        return doc
    if draw(st.booleans()):
        root: dict[str, Any] = {
            "mode": draw(st.integers(0, 0o7777)),
            "mtime_ns": draw(st.integers(-(1 << 62), 1 << 62)),
        }
        if draw(st.booleans()):
            root["owner"] = draw(_owner)
        xs = draw(_xattrs)
        if xs:
            root["xattrs"] = xs
        doc["root"] = root
    specials = [e["path"] for e in doc["specials"]]
    for i in range(draw(st.integers(0, 2)) if specials else 0):
        doc["hardlinks"].append({"path": f"hs{i}", "target": draw(st.sampled_from(specials))})
    return doc


@settings(deadline=None, max_examples=100)
@given(doc=format3())
def test_a_format_3_document_round_trips_exactly(doc: dict[str, Any]) -> None:
    m = manifest.loads(json.dumps(doc))
    assert m.dump() == doc
    assert (m.root is None) == ("root" not in doc)
    if m.root is not None:
        assert m.root.path == "" and m.root.mode == doc["root"]["mode"]
    names = {f.path for f in m.files} | {s.path for s in m.specials}
    assert all(h.target in names for h in m.hardlinks)
    # Marked format 2, the same document has no root: format 2 never recorded one.
    if "root" in doc:
        assert manifest.loads(json.dumps({**doc, "format": 2})).root is None


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 70), 1 << 70),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _slots(doc: dict[str, Any]) -> list[tuple[Any, Any]]:
    """Every (container, key) inside the format-2 records of `doc`."""
    out: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in items:
            out.append((node, k))
            walk(v)

    for group in ("files", "dirs", "symlinks", "specials", "hardlinks"):
        for e in doc[group]:
            for key in ("owner", "xattrs", "holes", "kind", "major", "minor", "target", "path"):
                if key in e:
                    out.append((e, key))
                    walk(e[key])
    return out


@settings(deadline=None, max_examples=300)
@given(doc=format2(), data=st.data())
def test_a_damaged_format_2_field_is_a_catalog_error_or_still_valid(doc: dict[str, Any], data: st.DataObject) -> None:
    slots = _slots(doc)
    if not slots:
        return
    bad = copy.deepcopy(doc)
    container, key = data.draw(st.sampled_from(_slots(bad)))
    container[key] = data.draw(_JUNK)
    try:
        m = manifest.loads(json.dumps(bad))
    except CatalogError as exc:
        assert "manifest.json: " in str(exc)
        return
    # Accepted: then it must be a document the writer would produce again.
    assert manifest.loads(json.dumps(m.dump())) == m


def _owner_record(**names: object) -> dict[str, object]:
    return {"uid": 0, "gid": 0, "user": "root", "group": "root", **names}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["files"][0].update(holes=[[0, 5], [3, 5]]), r"files\[0\]\.holes\[1\]: hole 3\+5 overlaps"),
        (lambda d: d["files"][0].update(holes=[[0, 0]]), r"files\[0\]\.holes\[0\]\[1\]"),
        (lambda d: d["files"][0].update(xattrs=[{"name": "user.a", "value": ""}] * 2), "'user.a' is listed twice"),
        (lambda d: d["hardlinks"].append({"path": "x", "target": "nope"}), r"hardlinks\[0\]\.target: 'nope' is not"),
        (lambda d: d["specials"].append({"path": "x", "kind": "fifo", "mode": 0o10000, "mtime_ns": 0}), "mode"),
        (lambda d: d.update(format=5), "format 5 is not supported"),
        (lambda d: d.update(format=3, root={"mode": 0o10000, "mtime_ns": 0}), r"root\.mode"),
        (lambda d: d.update(format=3, root={"mode": 0o755}), r"root\.mtime_ns"),
        # Names of a type json gives but a dict key cannot be (the directories' fast path).
        (
            lambda d: d["dirs"].append({"path": "d", "mode": 0o755, "mtime_ns": 0, "owner": _owner_record(user=[])}),
            "user",
        ),
        (
            lambda d: d["dirs"].append({"path": "d", "mode": 0o755, "mtime_ns": 0, "owner": _owner_record(group={})}),
            "group",
        ),
    ],
)
def test_hand_written_bad_records(change: Any, message: str) -> None:
    doc = {
        "format": 2,
        "set": {
            "id": "20260101T000000000000Z-0123abcd",
            "database": "t",
            "backup_type": "full",
            "parent_id": None,
            "started_at_us": 0,
            "finished_at_us": 0,
            "block_size": 8192,
            "algorithm": "blake3",
            "compression": None,
            "tags": [],
            "size": 10,
            "bytes_read": 10,
            "source_kind": "files",
            "source_path": "/src",
            "source_is_dir": True,
            "archive_dir": None,
        },
        "pieces": [
            {
                "id": "20260101T000000000000Z-0123abcd/data.piece",
                "path": "sets/20260101T000000000000Z-0123abcd/data.piece",
                "size": 10,
                "checksum": "0" * 64,
                "algorithm": "blake3",
                "block_count": 1,
            }
        ],
        "blockmap": {"path": "sets/20260101T000000000000Z-0123abcd/blockmap", "checksum": "0" * 64, "block_count": 1},
        "sources": [{"set_id": "20260101T000000000000Z-0123abcd", "piece": "data.piece"}],
        "files": [
            {
                "path": "f",
                "mode": 0o644,
                "mtime_ns": 0,
                "size": 10,
                "digest": "0" * 64,
                "first_block": 0,
                "block_count": 1,
            }
        ],
        "dirs": [],
        "symlinks": [],
        "summary": {"skipped": [], "changed": []},
        "hardlinks": [],
        "specials": [],
    }
    manifest.loads(json.dumps(doc))
    change(doc)
    with pytest.raises(CatalogError, match=message):
        manifest.loads(json.dumps(doc))
