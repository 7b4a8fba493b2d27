"""The manifest's ``wal`` record (sqlite_wal.py): what is dumped parses back to the same
record, and a damaged field is a CatalogError naming the file and the field."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup.errors import CatalogError
from rustybackup.sqlite_wal import WalCapture, WalPosition, wal_record_from_json

U32 = st.integers(0, 2**32 - 1)
PAIR = st.tuples(U32, U32)


@st.composite
def captures(draw: st.DrawFn) -> WalCapture:
    first = draw(st.integers(1, 10_000))
    n = draw(st.integers(0, 30))
    if n == 0:
        return WalCapture(
            draw(st.integers(0, 99)),
            draw(st.none() | PAIR),
            4096,
            first,
            first - 1,
            draw(st.none() | PAIR),
            draw(st.none() | PAIR),
            (),
            draw(st.booleans()),
            "",
            None,
        )
    frames = sorted(draw(st.sets(st.integers(first, first + 200), min_size=n, max_size=n)))
    seen = sorted(draw(st.lists(st.integers(0, 2**53), min_size=n, max_size=n)))
    commits = tuple(zip(frames, seen, strict=True))
    return WalCapture(
        generation=draw(st.integers(0, 99)),
        salt=draw(PAIR),
        page_size=draw(st.sampled_from([512, 4096, 65536])),
        first_frame=first,
        last_frame=frames[-1],
        seed=draw(PAIR),
        checksum=draw(PAIR),
        commits=commits,
        continuous=draw(st.booleans()),
        note=draw(st.text(max_size=20)),
        file=f"wal-{first}",
        follows=draw(st.none() | st.tuples(U32, U32, st.integers(0, 2**40))),
    )


@settings(max_examples=200, deadline=None)
@given(rec=captures())
def test_a_capture_record_round_trips(rec: WalCapture) -> None:
    assert wal_record_from_json(rec.to_json(), "m.json") == rec


@settings(max_examples=100, deadline=None)
@given(salt=st.none() | PAIR, frame=st.integers(0, 2**40), checksum=st.none() | PAIR)
def test_a_position_round_trips(salt: tuple[int, int] | None, frame: int, checksum: tuple[int, int] | None) -> None:
    pos = WalPosition(salt, 4096, frame, checksum)
    assert wal_record_from_json(pos.to_json(), "m.json") == pos


GOOD = WalCapture(
    3,
    (1, 2),
    4096,
    10,
    12,
    (5, 6),
    (7, 8),
    ((11, 100), (12, 200)),
    True,
    "",
    "wal-x",
    (9, 9, 9),
).to_json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(kind="other"), "wal.kind"),
        (lambda d: d.pop("page_size"), "wal.page_size: missing"),
        (lambda d: d.update(salt=[1]), "wal.salt"),
        (lambda d: d.update(salt=[1, 2**32]), "wal.salt"),
        (lambda d: d.update(first_frame=0), "wal.first_frame"),
        (lambda d: d.update(last_frame=5), "wal.last_frame"),
        (lambda d: d.update(commits=[[100, [13]]]), "wal.commits[0]"),
        (lambda d: d.update(commits=[[100, [12, 11]]]), "wal.commits[1]"),
        (lambda d: d.update(commits=[[100, [11]]]), "wal.commits"),
        (lambda d: d.update(commits=[["x", [12]]]), "wal.commits[0]"),
        (lambda d: d.update(file="../x"), "wal.file"),
        (lambda d: d.update(file=None), "wal.file"),
        (lambda d: d.update(continuous=1), "wal.continuous"),
        (lambda d: d.update(follows=[1, 2]), "wal.follows"),
        (lambda d: d.update(seed=None), "wal.salt"),
    ],
)
def test_a_damaged_field_is_named(change: Any, field: str) -> None:
    data = copy.deepcopy(GOOD)
    change(data)
    with pytest.raises(CatalogError, match="^" + re.escape(f"sets/x/manifest.json: {field}")):
        wal_record_from_json(data, "sets/x/manifest.json")


def test_not_an_object() -> None:
    with pytest.raises(CatalogError, match="expected an object"):
        wal_record_from_json([1], "m.json")
