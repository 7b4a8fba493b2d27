"""The manifest's files table read in Rust (rust/src/format/manifest_files.rs): for any
document, `manifest.py` reading it through the split gives exactly what the pure-Python
parse of `json.loads` gives (the same Manifest, or a CatalogError with the same words);
the oracle is the Python parser that the split hands everything it does not accept to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core, manifest
from rustybackup.errors import CatalogError
from test_manifest import HEX, WHERE, sample


def _outcome(parse: Any) -> object:
    try:
        return parse()
    except CatalogError as exc:
        return f"error: {exc}"


def _same(text: str) -> object:
    """The split reader's result, checked against the oracle's."""
    got = _outcome(lambda: manifest.parse(manifest._decode(text, WHERE), WHERE))

    def oracle() -> manifest.Manifest:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CatalogError(f"{WHERE}: not a JSON manifest ({manifest._short(exc)})") from None
        return manifest.parse(data, WHERE)

    assert got == _outcome(oracle)
    return got


_I64 = 1 << 63
_EDGE_INTS = [0, 1, -1, 0o7777, 0o10000, _I64 - 1, _I64, -_I64, -_I64 - 1, (1 << 64) - 1, 1 << 64, 1 << 32]
_json_scalar = st.one_of(
    st.sampled_from(_EDGE_INTS),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "..", "a/../b", "/abs", "a//b", "a/", "./a", "a\0b", "é/ü", HEX, HEX.upper(), HEX[:-1]]),
    st.text(max_size=6),
)
_json_value = st.recursive(
    _json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
)
_owner = st.one_of(
    st.fixed_dictionaries(
        {"uid": st.sampled_from([0, 1000, 0xFFFFFFFF, 1 << 32, -1]), "gid": st.sampled_from([0, 5, 0xFFFFFFFF])},
        optional={
            "user": st.sampled_from([None, "root", "", "a\0"]),
            "group": st.sampled_from([None, "wheel", 3]),
            "x": st.just(1),
        },
    ),
    _json_value,
)
_KEYS = ["path", "mode", "mtime_ns", "size", "digest", "first_block", "block_count"]


@st.composite
def _entry(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 19)) == 0:
        return draw(_json_value)  # not an object at all
    e: dict[str, object] = {
        "path": draw(st.sampled_from(["a", "d/e/f", "x y/z"])),
        "mode": draw(st.sampled_from([0o644, 0o7777, 0])),
        "mtime_ns": draw(st.sampled_from([0, -5, _I64 - 1, -_I64])),
        "size": draw(st.sampled_from([0, 1, _I64 - 1])),
        "digest": HEX,
        "first_block": 0,
        "block_count": 0,
    }
    if draw(st.booleans()):
        e |= {"ctime_ns": draw(st.sampled_from([1, -1])), "ino": draw(st.sampled_from([1, (1 << 64) - 1])), "dev": 2}
    if draw(st.booleans()):
        e["owner"] = draw(_owner)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*_KEYS, "ctime_ns", "ino", "dev", "xattrs", "holes", "other"]))
        if draw(st.integers(0, 3)) == 0:
            e.pop(key, None)
        elif key == "xattrs":
            e[key] = draw(st.sampled_from([[{"name": "user.a", "value": "AA=="}], [], [{"name": "u", "value": "!"}]]))
        elif key == "holes":
            e[key] = draw(st.sampled_from([[[0, 4096]], [], [[0, 0]]]))
        else:
            e[key] = draw(_json_value)
    return e


@settings(deadline=None)
@given(
    st.lists(_entry(), max_size=6),
    st.sampled_from(["sha256", "md5", "sha512", "blake3", "crc", 7]),
    st.integers(1, 2),
)
def test_the_split_reads_any_files_list_as_the_python_parser_does(
    files: list[object], algorithm: object, fmt: int
) -> None:
    d = sample()
    d["format"], d["set"]["algorithm"], d["files"] = fmt, algorithm, files
    _same(json.dumps(d))


def test_a_well_formed_table_is_handed_over_as_rows() -> None:
    d = sample()
    d["format"] = 2
    d["files"][0] |= {"ctime_ns": 3, "ino": 4, "dev": 5, "owner": {"uid": 0, "gid": 0, "user": "root", "group": None}}
    split = _core.split_manifest(json.dumps(d).encode())
    assert split is not None
    rows, rest = split
    assert rows is not None and all(isinstance(r, tuple) for r in rows)
    assert "files" not in json.loads(rest) and json.loads(rest)["dirs"] == d["dirs"]
    m = _same(json.dumps(d))
    assert isinstance(m, manifest.Manifest)
    assert m.files[0].owner == manifest.Owner(0, 0, "root", None) and m.files[0].ino == 4


@pytest.mark.parametrize(
    ("files_text", "expect"),
    [
        # Duplicate keys: the last one wins, as in Python's json.
        (
            f'[{{"path":"../x","path":"a","mode":1,"mtime_ns":0,"size":0,"digest":"{HEX}",'
            '"first_block":0,"block_count":0}]',
            None,
        ),
        ('[{"path":"a","mode":NaN}]', "files[0].mode"),  # Python's json reads NaN; Rust does not
        ("[" + "[" * 5000 + "]" * 5000 + "]", "not a JSON manifest"),  # fmt: skip
        ('[{"path":"a","mode":1e400}]', "files[0].mode"),
        ('[{"path":"\\ud800"}]', "files[0]"),  # a lone surrogate: json reads it, serde does not
        ("7", "files: expected a list"),
        # serde reads a struct from an array too; the Python parser wants objects.
        (
            f'[{{"path":"a","mode":1,"mtime_ns":0,"size":0,"digest":"{HEX}",'
            '"first_block":0,"block_count":0,"owner":[0,0]}]',
            "files[0].owner: expected an object",
        ),
        (f'[["a",1,0,0,"{HEX}",0,0]]', "files[0]"),
    ],
)
def test_hand_written_documents_read_as_the_python_parser_reads_them(files_text: str, expect: str | None) -> None:
    text = json.dumps(sample() | {"files": "FILES"}).replace('"FILES"', files_text)
    got = _same(text)
    if expect is None:
        assert isinstance(got, manifest.Manifest)
    else:
        assert isinstance(got, str) and expect in got


def test_a_damaged_or_non_utf8_document_is_named(tmp_path: Path) -> None:
    for raw in (b"\xff\xfe{", b"{", b'{"files": [}', b"[]"):
        p = tmp_path / "manifest.json"
        p.write_bytes(raw)
        with pytest.raises(CatalogError, match=r"manifest\.json: "):
            manifest.load(p)
        p.unlink()
    # The BOM json accepts in bytes is accepted here too.
    p = tmp_path / "manifest.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(sample()).encode())
    assert manifest.load(p).record.id == sample()["set"]["id"]


@settings(deadline=None)
@given(
    st.lists(_entry(), max_size=6),
    st.sampled_from(["sha256", "md5", "blake3"]),
    st.sampled_from(["same", "an entry more", "another algorithm", "no files"]),
)
def test_files_of_a_known_text_read_as_a_fresh_read_does(files: list[object], algorithm: str, change: str) -> None:
    """`write`'s check of a child manifest reuses the parent's table when the files' text
    is the parent's byte for byte (issue 17): for any files list, the child reads exactly
    as it reads without the parent's table (the same Manifest or the same error words)."""
    d = sample()
    d["format"], d["set"]["algorithm"], d["files"] = 2, algorithm, files
    parent = _outcome(lambda: manifest.parse(manifest._decode(json.dumps(d), WHERE, keep_text=True), WHERE))
    if not isinstance(parent, manifest.Manifest) or not isinstance(parent.files, manifest.FileTable):
        return
    known = parent.files
    child = sample()
    child["format"], child["set"]["algorithm"], child["files"] = 2, algorithm, files
    child["set"]["tags"] = ["another", "set"]
    if change == "an entry more":
        child["files"] = [*files, files[0] if files else {}]
    elif change == "another algorithm":
        child["set"]["algorithm"] = "sha512" if algorithm != "sha512" else "md5"
    elif change == "no files":
        del child["files"]
    text = json.dumps(child).encode()
    got = _outcome(lambda: manifest.parse(manifest._decode(text, WHERE, known=known), WHERE))
    assert got == _outcome(lambda: manifest.parse(manifest._decode(text, WHERE), WHERE))
    if change == "same":
        assert isinstance(got, manifest.Manifest) and got.files is known


def test_a_manifest_read_without_keep_text_holds_no_document(tmp_path: Path) -> None:
    """Only the backup's parent keeps its text (restores read whole chains of manifests)."""
    d = sample()
    d["format"] = 2
    text = json.dumps(d)
    plain = manifest.parse(manifest._decode(text, WHERE), WHERE).files
    kept = manifest.parse(manifest._decode(text, WHERE, keep_text=True), WHERE).files
    assert isinstance(plain, manifest.FileTable) and not plain.read_with("sha256")
    assert isinstance(kept, manifest.FileTable) and kept.read_with("sha256") and not kept.read_with("md5")
