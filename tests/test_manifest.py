"""manifest.py, the one owner of manifest.json: every valid manifest round-trips
(dump -> load -> equal, and against plain JSON as the oracle), and every removed,
mistyped or out-of-range field is a CatalogError naming the file and the field."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import manifest
from rustybackup.errors import CatalogError
from rustybackup.manifest import Manifest

WHERE = "sets/x/manifest.json"
FULL_ID = "20261101T020200000000Z-9a5295a0"
SET_ID = "20261101T020600000000Z-6924054c"
HEX = "ab" * 32


def sample() -> dict[str, Any]:
    """An INCREMENTAL set of two files (4 + 0 blocks of 4 KiB), a directory, a link and a
    summary, written out by hand from docs/FORMAT.md."""
    return {
        "format": 1,
        "set": {
            "id": SET_ID,
            "database": "tree",
            "backup_type": "incremental",
            "parent_id": FULL_ID,
            "started_at_us": 1_793_498_520_000_000,
            "finished_at_us": 1_793_498_580_000_000,
            "block_size": 4096,
            "algorithm": "sha256",
            "compression": "zstd",
            "tags": ["nightly"],
            "size": 3000,
            "bytes_read": 16000,
            "source_kind": "files",
            "source_path": "/srv/tree",
            "source_is_dir": True,
            "archive_dir": None,
        },
        "pieces": [
            {
                "id": f"{SET_ID}/data.piece",
                "path": f"sets/{SET_ID}/data.piece",
                "size": 2000,
                "checksum": HEX,
                "algorithm": "sha256",
                "block_count": 1,
            }
        ],
        "blockmap": {"path": f"sets/{SET_ID}/blockmap", "checksum": HEX, "block_count": 4},
        "sources": [{"set_id": FULL_ID, "piece": "data.piece"}, {"set_id": SET_ID, "piece": "data.piece"}],
        "files": [
            {
                "path": "sub/a.txt",
                "mode": 0o644,
                "mtime_ns": -5,
                "size": 16000,
                "digest": HEX,
                "first_block": 0,
                "block_count": 4,
            },
            {
                "path": "empty",
                "mode": 0o600,
                "mtime_ns": 7,
                "size": 0,
                "digest": HEX,
                "first_block": 4,
                "block_count": 0,
            },
        ],
        "dirs": [{"path": "sub", "mode": 0o755, "mtime_ns": 9}],
        "symlinks": [{"path": "sub/link", "target": "/etc/passwd", "mtime_ns": 3}],
        "summary": {"skipped": [{"path": "sock", "reason": "socket"}], "changed": ["sub/a.txt"]},
    }


def load_dict(d: object) -> Manifest:
    return manifest.loads(json.dumps(d), WHERE)


def test_the_sample_is_valid_and_round_trips() -> None:
    d = sample()
    m = load_dict(d)
    assert m.dump() == d
    assert m.record.parent_id == FULL_ID and m.files[1].path == "empty"
    assert [e.reason for e in m.summary.skipped] == ["socket"]


def test_a_manifest_without_a_summary_reads_as_clean() -> None:
    # Format-1 manifests written before the summary existed.
    d = sample()
    del d["summary"]
    m = load_dict(d)
    assert m.summary.clean
    assert m.dump()["summary"] == {"skipped": [], "changed": []}


def test_load_and_write_through_files(tmp_path: Path) -> None:
    m = load_dict(sample())
    path = tmp_path / "sets" / SET_ID / "manifest.json"
    path.parent.mkdir(parents=True)
    manifest.write(path, m)
    assert manifest.load(path, set_id=SET_ID) == m
    with pytest.raises(CatalogError, match=rf"^sets/{SET_ID}/manifest.json: set.id: expected '{FULL_ID}'"):
        manifest.load(path, set_id=FULL_ID)


# --- every field: removed, mistyped, out of range ---------------------------------------


def leaves(d: Any, at: str = "") -> Iterator[tuple[str, list[str | int]]]:
    """(label, key path) of every value in the document, containers included."""
    if isinstance(d, dict):
        for k, v in d.items():
            label = f"{at}.{k}" if at else k
            yield label, [k]
            for sub, keys in leaves(v, label):
                yield sub, [k, *keys]
    elif isinstance(d, list):
        for i, v in enumerate(d):
            label = f"{at}[{i}]"
            yield label, [i]
            for sub, keys in leaves(v, label):
                yield sub, [i, *keys]


FIELDS = [(label, keys) for label, keys in leaves(sample()) if not isinstance(keys[-1], int)]
OPTIONAL = {"summary"}  # absent in manifests written before it existed


def _holder(d: Any, keys: list[str | int]) -> Any:
    for k in keys[:-1]:
        d = d[k]
    return d


def _wrong_type(value: object) -> object:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int):
        return "x"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return {"not": "a list"}
    if isinstance(value, dict):
        return ["not", "an object"]
    return 3.5  # None: a nullable field


def _message_names(exc: CatalogError, label: str) -> bool:
    return str(exc).startswith(f"{WHERE}: {label}")


@pytest.mark.parametrize(("label", "keys"), FIELDS, ids=[f for f, _ in FIELDS])
def test_a_removed_field_is_named(label: str, keys: list[str | int]) -> None:
    d = sample()
    del _holder(d, keys)[keys[-1]]
    if label in OPTIONAL:
        load_dict(d)
        return
    with pytest.raises(CatalogError) as info:
        load_dict(d)
    assert _message_names(info.value, label), str(info.value)
    assert "missing" in str(info.value)


@pytest.mark.parametrize(("label", "keys"), FIELDS, ids=[f for f, _ in FIELDS])
def test_a_mistyped_field_is_named(label: str, keys: list[str | int]) -> None:
    d = sample()
    holder = _holder(d, keys)
    holder[keys[-1]] = _wrong_type(holder[keys[-1]])
    with pytest.raises(CatalogError) as info:
        load_dict(d)
    assert _message_names(info.value, label), str(info.value)
    assert "expected" in str(info.value)


# One out-of-range value per field whose range is narrower than its type.
OUT_OF_RANGE: dict[str, object] = {
    "format": 5,  # one past the newest (4 since the manifest checksum)
    "set.id": "../../victim",
    "set.database": "../db",
    "set.backup_type": "weekly",
    "set.parent_id": "../../victim",
    "set.started_at_us": 10**20,
    "set.finished_at_us": -(10**20),
    "set.block_size": 100,
    "set.algorithm": "crc32",
    "set.compression": "gzip",
    "set.size": -1,
    "set.bytes_read": -1,
    "set.source_kind": "tape",
    "set.source_path": "",
    "set.archive_dir": "",
    "pieces[0].id": "",
    "pieces[0].path": "../../etc/passwd",
    "pieces[0].size": -1,
    "pieces[0].checksum": "AB" * 32,
    "pieces[0].algorithm": "crc32",
    "pieces[0].block_count": -1,
    "blockmap.path": "/etc/passwd",
    "blockmap.checksum": "ab",
    "blockmap.block_count": -7,
    "sources[0].set_id": "x",
    "sources[0].piece": "a/b",
    "sources[1].set_id": "../..",
    "sources[1].piece": "..",
    "files[0].path": "../escape",
    "files[0].mode": 0o10000,
    "files[0].mtime_ns": 1 << 63,
    "files[0].size": -1,
    "files[0].digest": "z" * 64,
    "files[0].first_block": -1,
    "files[0].block_count": -1,
    "files[1].path": "a//b",
    "files[1].mode": -1,
    "files[1].mtime_ns": -(1 << 64),
    "files[1].size": -1,
    "files[1].digest": HEX[:-1],
    "files[1].first_block": -1,
    "files[1].block_count": -1,
    "dirs[0].path": ".",
    "dirs[0].mode": 0o77777,
    "dirs[0].mtime_ns": 1 << 64,
    "symlinks[0].path": "/abs",
    "symlinks[0].target": "",
    "symlinks[0].mtime_ns": 1 << 64,
    "summary.skipped[0].path": "..",
    "summary.skipped[0].reason": "",
}


@pytest.mark.parametrize(("label", "value"), sorted(OUT_OF_RANGE.items()), ids=sorted(OUT_OF_RANGE))
def test_an_out_of_range_field_is_named(label: str, value: object) -> None:
    keys = dict(FIELDS)[label]
    d = sample()
    _holder(d, keys)[keys[-1]] = value
    with pytest.raises(CatalogError) as info:
        load_dict(d)
    assert _message_names(info.value, label), str(info.value)


def test_every_ranged_scalar_has_an_out_of_range_case() -> None:
    # A boolean has no range beyond its type; every other scalar field has one.
    scalars = {label for label, keys in FIELDS if not isinstance(_holder(sample(), keys)[keys[-1]], dict | list)}
    assert scalars - {"set.source_is_dir"} == set(OUT_OF_RANGE)


# --- what only the fields together can say ---------------------------------------------


def _mutated(**changes: Any) -> dict[str, Any]:
    d = sample()
    for path, value in changes.items():
        target: Any = d
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        last = keys[-1]
        target[int(last) if last.isdigit() else last] = value
    return d


CONSISTENCY = {
    "duplicate file path": (_mutated(files__1__path="sub/a.txt"), r"files\[1\].path: 'sub/a.txt' is listed twice"),
    "a directory that is also a link": (
        _mutated(symlinks__0__path="sub"),
        r"symlinks\[0\].path: 'sub' is listed twice \(also dirs\[0\].path\)",
    ),
    "a file under a file": (
        _mutated(files__1__path="sub/a.txt/x"),
        r"files\[1\].path: 'sub/a.txt/x' lies under 'sub/a.txt'",
    ),
    "too few blocks for the size": (_mutated(files__0__block_count=3), r"files\[0\].block_count: 3 blocks for 16000"),
    "a gap between files": (_mutated(files__1__first_block=5), r"files\[1\].first_block: expected 4"),
    "a block map shorter than the files": (_mutated(blockmap__block_count=3), r"blockmap.block_count: 3, but"),
    "more stored blocks than the files hold": (_mutated(pieces__0__block_count=5), r"pieces: the pieces index 5"),
    "a last source that is not the set": (
        _mutated(sources__1__set_id=FULL_ID.replace("9a", "9b")),
        r"sources\[1\]: the last source must be",
    ),
    "a parent that is not the previous source": (
        _mutated(set__parent_id="20261101T020400000000Z-8522a7d6"),
        r"sources: the source before the set's own",
    ),
    "a full set with a parent": (_mutated(set__backup_type="full"), r"set.parent_id: a full set has no parent"),
    "an incremental without a parent": (_mutated(set__parent_id=None), r"set.parent_id: a incremental set must"),
    "a set that is its own parent": (_mutated(set__parent_id=SET_ID), r"set.parent_id: a set cannot be its own"),
    "a piece outside the set": (
        _mutated(pieces__0__path=f"sets/{FULL_ID}/data.piece"),
        r"pieces\[0\].path: expected 'sets/2026",
    ),
    "a block map outside the set": (_mutated(blockmap__path="sets/other/blockmap"), r"blockmap.path: expected"),
    "a piece with another algorithm": (
        _mutated(pieces__0__algorithm="blake3"),
        r"pieces\[0\].algorithm: 'blake3' differs from set.algorithm",
    ),
    "finished before started": (_mutated(set__finished_at_us=0), r"set.finished_at_us: 0 is before"),
    "a set smaller than its pieces": (_mutated(set__size=10), r"set.size: 10 is smaller than its pieces"),
    "archive kind on a files set": (_mutated(set__source_kind="archive"), r"set.source_kind: 'archive' does not match"),
    "a source listed twice": (
        _mutated(sources=[{"set_id": SET_ID, "piece": "data.piece"}] * 2),
        r"sources\[1\].set_id: .* listed twice",
    ),
    "no pieces": (_mutated(pieces=[]), r"pieces: a set has at least one piece"),
    "a top level that is not an object": ([1, 2], r"\(top level\): expected an object"),
}


@pytest.mark.parametrize(("doc", "pattern"), CONSISTENCY.values(), ids=list(CONSISTENCY))
def test_inconsistent_fields_are_named(doc: object, pattern: str) -> None:
    with pytest.raises(CatalogError, match=f"^{re.escape(WHERE)}: {pattern}"):
        load_dict(doc)


def test_a_differential_reads_exactly_its_full() -> None:
    d = sample()
    d["set"]["backup_type"] = "differential"
    load_dict(d)
    d["sources"].insert(0, {"set_id": "20261101T020000000000Z-00000000", "piece": "data.piece"})
    with pytest.raises(CatalogError, match="a differential set reads its FULL and itself, got 3 sources"):
        load_dict(d)


def test_damaged_documents_are_catalog_errors(tmp_path: Path) -> None:
    path = tmp_path / "sets" / SET_ID / "manifest.json"
    path.parent.mkdir(parents=True)
    where = f"sets/{SET_ID}/manifest.json"
    for text, pattern in [
        ("{not json", "not a JSON manifest"),
        ("", "not a JSON manifest"),
        ("[" * 100_000 + "]" * 100_000, "not a JSON manifest"),
        ("null", r"\(top level\): expected an object, got None"),
        (json.dumps({**sample(), "format": "1"}), "format: expected a non-negative integer, got '1'"),
        (json.dumps({**sample(), "format": 5}), "format: manifest format 5 is not supported"),
    ]:
        path.write_text(text)
        with pytest.raises(CatalogError, match=f"^{re.escape(where)}: {pattern}"):
            manifest.load(path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(CatalogError, match="not a JSON manifest"):
        manifest.load(path)
    with pytest.raises(CatalogError, match="cannot read the manifest"):
        manifest.load(tmp_path / "absent.json")


# --- property: generated manifests against plain JSON ------------------------------------

_NAME_CHARS = st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]) | st.sampled_from(
    ["\udcff", "\udc80"]  # undecodable bytes of a file name, as surrogate escapes
)
_name = st.text(_NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
_ALGS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "blake3": 64}


def _set_id(draw: st.DrawFn) -> str:
    digits = draw(st.text("0123456789", min_size=20, max_size=20))
    return f"{digits[:8]}T{digits[8:]}Z-{draw(st.text('0123456789abcdef', min_size=8, max_size=8))}"


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest as plain JSON data, built straight from docs/FORMAT.md."""
    alg = draw(st.sampled_from(sorted(_ALGS)))
    hexes = st.text("0123456789abcdef", min_size=_ALGS[alg], max_size=_ALGS[alg])
    set_id = _set_id(draw)
    btype = draw(st.sampled_from(["full", "incremental", "differential", "archive_log"]))
    block_size = draw(st.integers(512, 16 << 20))
    archive = btype == "archive_log"
    parents = [] if btype in ("full", "archive_log") else [_set_id(draw) for _ in range(draw(st.integers(1, 3)))]
    if btype == "differential":
        parents = parents[:1]
    parents = [p for p in dict.fromkeys(parents) if p != set_id] if parents else []
    if btype in ("incremental", "differential") and not parents:
        btype = "full"
    dir_names = [] if archive else draw(st.lists(_name, unique=True, max_size=4))
    dirs = [f"d{n}" for n in dir_names]
    file_names = draw(st.lists(_name, unique=True, max_size=6))
    files, at = [], 0
    for n in file_names:
        where = draw(st.sampled_from([""] + [d + "/" for d in dirs])) if dirs else ""
        size = draw(st.integers(0, 5 * block_size))
        count = -(-size // block_size)
        files.append(
            {
                "path": f"{where}f{n}",
                "mode": draw(st.integers(0, 0o7777)),
                "mtime_ns": draw(st.integers(-(1 << 63), (1 << 63) - 1)),
                "size": size,
                "digest": draw(hexes),
                "first_block": at,
                "block_count": count,
            }
        )
        at += count
    links = (
        []
        if archive
        else [
            {"path": f"l{n}", "target": t, "mtime_ns": draw(st.integers(-(1 << 40), 1 << 40))}
            for n, t in draw(
                st.lists(
                    st.tuples(_name, st.text(min_size=1).filter(lambda s: "\0" not in s)),
                    unique_by=lambda x: x[0],
                    max_size=3,
                )
            )
        ]
    )
    stored = at if not parents else draw(st.integers(0, at))
    piece_size = draw(st.integers(0, 1 << 40))
    started = draw(st.integers(0, 1 << 52))
    return {
        "format": 1,
        "set": {
            "id": set_id,
            "database": draw(st.from_regex(manifest.DATABASE_NAME, fullmatch=True)),
            "backup_type": btype,
            "parent_id": parents[-1] if parents else None,
            "started_at_us": started,
            "finished_at_us": started + draw(st.integers(0, 1 << 40)),
            "block_size": block_size,
            "algorithm": alg,
            "compression": draw(st.sampled_from([None, "zstd"])),
            "tags": draw(st.lists(st.text(max_size=5), max_size=3)),
            "size": piece_size + draw(st.integers(0, 1 << 20)),
            "bytes_read": draw(st.integers(0, 1 << 50)),
            "source_kind": "archive" if archive else draw(st.sampled_from(["files", "sqlite"])),
            "source_path": "/src",
            "source_is_dir": draw(st.booleans()),
            "archive_dir": "/wal" if archive else draw(st.sampled_from([None, "/wal"])),
        },
        "pieces": [
            {
                "id": f"{set_id}/data.piece",
                "path": f"sets/{set_id}/data.piece",
                "size": piece_size,
                "checksum": draw(hexes),
                "algorithm": alg,
                "block_count": stored,
            }
        ],
        "blockmap": {"path": f"sets/{set_id}/blockmap", "checksum": draw(hexes), "block_count": at},
        "sources": [{"set_id": p, "piece": "data.piece"} for p in parents]
        + [{"set_id": set_id, "piece": "data.piece"}],
        "files": files,
        "dirs": [{"path": d, "mode": 0o755, "mtime_ns": 0} for d in dirs],
        "symlinks": links,
        "summary": {
            "skipped": [{"path": f"s{n}", "reason": "socket"} for n in draw(st.lists(_name, unique=True, max_size=2))],
            "changed": [f["path"] for f in files if draw(st.booleans())],
        },
    }


@settings(deadline=None)
@given(manifests())
def test_generated_manifests_round_trip_against_plain_json(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    m = manifest.loads(text, WHERE)
    # The oracle: the document json itself decodes, untouched by manifest.py.
    assert m.dump() == json.loads(text)
    assert manifest.loads(json.dumps(m.dump()), WHERE) == m
    assert m.id == doc["set"]["id"] and len(m.files) == len(doc["files"])


@settings(deadline=None)
@given(manifests(), st.data())
def test_any_generated_field_removed_is_named(doc: dict[str, Any], data: st.DataObject) -> None:
    fields = [(label, keys) for label, keys in leaves(doc) if not isinstance(keys[-1], int) and label not in OPTIONAL]
    label, keys = data.draw(st.sampled_from(fields))
    broken = copy.deepcopy(doc)
    del _holder(broken, keys)[keys[-1]]
    with pytest.raises(CatalogError) as info:
        load_dict(broken)
    assert _message_names(info.value, label), str(info.value)


def test_set_ids_have_their_documented_form() -> None:
    assert manifest.is_set_id(SET_ID)
    for bad in ["../../victim", SET_ID + "\n", SET_ID.upper(), SET_ID[:-1], "", None, 7, SET_ID.replace("T", "/")]:
        assert not manifest.is_set_id(bad), bad


def test_validate_checks_the_fields_of_a_manifest_built_in_code() -> None:
    m = load_dict(sample())
    bad_mode = dataclasses.replace(m, files=(dataclasses.replace(m.files[0], mode=0o70000), *m.files[1:]))
    with pytest.raises(CatalogError, match=r"^m.json: files\[0\].mode: expected an integer in 0..4095"):
        bad_mode.validate("m.json")
    escaping = dataclasses.replace(m, dirs=(manifest.DirEntry("../up", 0o755, 0),))
    with pytest.raises(CatalogError, match=r"^m.json: dirs\[0\].path: path '../up' would escape"):
        escaping.validate("m.json")
    m.validate("m.json")


@settings(deadline=None)
@given(st.text(alphabet="./x\n\0", max_size=8))
def test_the_path_rule_matches_splitting_into_components(path: str) -> None:
    # The oracle: split on "/" and look at each component (docs/FORMAT.md).
    allowed = bool(path) and "\0" not in path and all(p not in ("", ".", "..") for p in path.split("/"))
    d = sample()
    d["symlinks"][0]["path"] = path
    if allowed:
        assert load_dict(d).symlinks[0].path == path
    else:
        with pytest.raises(CatalogError, match=r"symlinks\[0\]\.path"):
            load_dict(d)
