"""The manifest's ``dirs`` read by `_Parser.dirs` (the common entry accepted in one
expression, one Owner per distinct owner record): for any list, exactly what the
field-by-field `_Parser.dir` gives for each entry (the same DirEntry tuple, or a
CatalogError with the same words). The oracle is that named-check parser."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from rustybackup import manifest
from rustybackup.errors import CatalogError

WHERE = "sets/x/manifest.json"


def _outcome(parse: Any) -> object:
    try:
        return parse()
    except CatalogError as exc:
        return f"error: {exc}"


def _both(dirs: object) -> tuple[object, object]:
    p = manifest._Parser(WHERE)
    return _outcome(lambda: p.dirs(dirs)), _outcome(lambda: p.list_of(dirs, "dirs", p.dir))


_I64 = 1 << 63
_int_like = st.sampled_from([0, 1, 5, -1, 0o7777, 0o10000, _I64 - 1, _I64, -_I64, -_I64 - 1, 0xFFFFFFFF, 1 << 32])
_scalar = st.one_of(_int_like, st.booleans(), st.none(), st.sampled_from([1.0, 0.0, "1", ""]))
_name = st.sampled_from([None, "root", "", "a\0", 0, False, "wheel"])
_owner = st.one_of(
    st.fixed_dictionaries(
        {"uid": st.one_of(_int_like, st.booleans(), st.just(1.0)), "gid": st.one_of(_int_like, st.booleans())},
        optional={"user": _name, "group": _name, "extra": _scalar},
    ),
    _scalar,
    st.lists(_int_like, max_size=2),
)
_path = st.sampled_from(["a", "a/b", "é/ü", "", "..", "a/../b", "/abs", "a//b", "a/", "./a", "a\0b"])
_good_owner = st.fixed_dictionaries(
    {"uid": st.sampled_from([0, 1000]), "gid": st.sampled_from([0, 5])},
    optional={"user": st.sampled_from(["root", None]), "group": st.sampled_from(["wheel", None])},
)
_good = st.fixed_dictionaries(
    {"path": st.sampled_from(["a", "a/b", "é/ü"]), "mode": st.sampled_from([0, 0o755, 0o7777]), "mtime_ns": _int_like},
    optional={"owner": _good_owner},
)
_field = st.sampled_from(["path", "mode", "mtime_ns", "owner", "xattrs", "other"])
_bad_value = st.one_of(_path, _scalar, _owner)
_xattrs = st.sampled_from([[], [{"name": "user.a", "value": "eA=="}], [{"name": "user.a"}], "x"])


@st.composite
def _dir(draw: st.DrawFn) -> object:
    """A well-formed entry with up to two fields replaced or removed, or any value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(_scalar, st.lists(_scalar, max_size=2)))
    entry: dict[str, object] = draw(_good)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(_field)
        if draw(st.booleans()):
            entry.pop(key, None)
        else:
            entry[key] = draw(_xattrs if key == "xattrs" else _bad_value)
    return entry


@given(st.one_of(st.lists(_dir(), max_size=8), _scalar, st.dictionaries(st.text(max_size=2), _scalar, max_size=2)))
def test_dirs_read_any_list_as_the_named_checks_do(dirs: object) -> None:
    fast, oracle = _both(dirs)
    assert fast == oracle


def test_a_cached_owner_does_not_admit_a_record_that_only_compares_equal() -> None:
    good = {"path": "a", "mode": 0o755, "mtime_ns": 1, "owner": {"uid": 1, "gid": 1, "user": "u"}}
    for uid in (True, 1.0):
        bad = {**good, "path": "b", "owner": {"uid": uid, "gid": 1, "user": "u"}}
        fast, oracle = _both([good, bad])
        assert fast == oracle
        assert isinstance(fast, str) and "dirs[1].owner.uid" in fast


def test_entries_with_one_owner_record_share_one_owner() -> None:
    owner = {"uid": 0, "gid": 0, "user": "root", "group": "root"}
    got = manifest._Parser(WHERE).dirs(
        [{"path": f"d{i}", "mode": 0o755, "mtime_ns": i, "owner": owner} for i in range(3)]
    )
    assert got[0].owner == manifest.Owner(0, 0, "root", "root")
    assert got[0].owner is got[1].owner is got[2].owner
