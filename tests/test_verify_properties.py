"""Properties of verification against an independent oracle (the piece layout parsed in
Python): random pieces, random bits in random blocks, many trials."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import Verifier, _core
from verify_support import Repo, read_index


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    files=st.integers(1, 4),
    size=st.integers(1, 30_000),
    block_size=st.sampled_from([512, 1024, 4096]),
    compression=st.sampled_from([None, "zstd"]),
    data=st.data(),
)
def test_full_names_exactly_the_flipped_blocks(
    seed: int, files: int, size: int, block_size: int, compression: str | None, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repo(Path(tmp), files=files, size=size, block_size=block_size, compression=compression, seed=seed)
        s = repo.backup("full")
        piece = repo.piece(s)
        entries, _ = read_index(piece)
        chosen = data.draw(st.lists(st.sampled_from(entries), min_size=1, max_size=5, unique_by=lambda e: e.offset))
        flipped = set()
        for e in chosen:
            if e.stored_len == 0:
                continue
            at = e.offset + data.draw(st.integers(0, e.stored_len - 1))
            repo.flip(piece, at, data.draw(st.integers(0, 7)))
            flipped.add(e.offset)
        v = Verifier(repo.manager)
        standard = v.verify(s.id, "standard")
        full = v.verify(s.id, "full")
        found = {b.offset for b in full.corrupt_blocks}
        compressed = {e.offset for e in entries if e.flags & 1}
        # Exact for stored blocks; a flip in a zstd frame's unused bits may decode to the
        # same bytes (never a false alarm, and STANDARD still flags the piece).
        assert found - flipped == set()
        assert flipped - compressed <= found
        assert flipped and [f.kind for f in standard.findings] == ["bad_checksum"]
        assert {b.block_index for b in full.corrupt_blocks} == {e.block_index for e in entries if e.offset in found}


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(1, 5000), delete=st.booleans())
def test_quick_flags_truncation_and_deletion(seed: int, cut: int, delete: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repo(Path(tmp), files=2, size=10_000, seed=seed)
        s = repo.backup("full")
        piece = repo.piece(s)
        if delete:
            piece.unlink()
        else:
            b = piece.read_bytes()
            piece.write_bytes(b[: max(0, len(b) - cut)])
        r = Verifier(repo.manager).verify(s.id, "quick")
        assert [f.kind for f in r.findings] == ["missing" if delete else "wrong_size"]
        assert r.bytes_read == 0


def _stop_after(n: int) -> Callable[..., Any]:
    """A stand-in for the Rust driver that runs out of budget after `n` files: the first
    `n` really verified, the rest passed with a zero budget (so really not checked)."""
    real = _core.verify_files
    seen: list[list[str]] = []

    def fake(
        rows: list[Any], level: str, *, budget: float | None = None, progress: Any = None, keys: Any = None
    ) -> list[Any]:
        seen.append([r[0] for r in rows])
        assert budget is not None
        return list(real(rows[:n], level, progress=progress, keys=keys)) + list(
            real(rows[n:], level, budget=0.0, keys=keys)
        )

    fake.seen = seen  # type: ignore[attr-defined]
    return fake


def test_budgeted_runs_cover_the_repository_least_recently_verified_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repo(tmp_path, files=1, size=5000)
    sets = [repo.backup("full") for _ in range(5)]
    fake = _stop_after(3)
    monkeypatch.setattr(_core, "verify_files", fake)
    v = Verifier(repo.manager)
    covered: set[str] = set()
    for _ in range(4):
        repo.clock.advance(hours=1)
        before = {c.item: c.last_verified for c in v.coverage().items}
        r = v.verify(None, "standard", budget=timedelta(minutes=10))
        assert r.ok and not r.complete
        assert r.pieces_checked == 3 and r.outcomes["not_checked"] == 7
        order = fake.seen[-1]  # type: ignore[attr-defined]
        covered |= set(order[:3])
        # Never-verified first, then oldest: the rows were offered in that order.
        stamps = [before[i] for i in order]
        keys = [(t is not None, t.timestamp() if t is not None else 0.0) for t in stamps]
        assert keys == sorted(keys)
    cov = v.coverage()
    assert cov.never_verified == [] and len(covered) == 10 == len(cov.items)
    assert {c.set_id for c in cov.items} == {s.id for s in sets}


def test_a_real_budget_stops_and_reports_what_was_left(tmp_path: Path) -> None:
    repo = Repo(tmp_path, files=1, size=5000)
    for _ in range(3):
        repo.backup("full")
    v = Verifier(repo.manager)
    r = v.verify(None, "full", budget=timedelta(microseconds=1))
    # Whatever the machine's speed, the run ends and says honestly what it checked.
    assert r.ok
    assert r.pieces_checked + r.outcomes.get("not_checked", 0) == 6
    assert len(v.coverage().never_verified) == r.outcomes.get("not_checked", 0)
