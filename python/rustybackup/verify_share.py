"""Budgeted verification split between scheduler nodes: each node walks the items in
the verifier's order (never verified first, then least recently verified), claims them a
few at a time for the round (claims.SharedHistory.claim_items: the first node to insert
an item's row checks it) and checks what it got, until its budget is spent. Claiming in
small chunks, not all at once, leaves the rest to the other nodes' budgets; an item
claimed but not reached stays claimed for the round, so no piece is checked twice in
one round."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from . import _core

__all__ = ["CHUNK", "verify_shared"]

#: Items claimed per round trip: small enough to share, large enough to keep the pool busy.
CHUNK = 16


class _Checkable(Protocol):
    @property
    def id(self) -> str: ...

    def row(self) -> Any: ...


T = TypeVar("T", bound=_Checkable)


def verify_shared(
    items: Sequence[T], level: str, seconds: float, share: Callable[[Sequence[str]], list[str]]
) -> tuple[list[T], list[Any]]:
    """(the items this node checked or reached, their verdicts), in order, within
    `seconds`."""
    mine: list[T] = []
    verdicts: list[Any] = []
    deadline = time.monotonic() + seconds
    for start in range(0, len(items), CHUNK):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        chunk = items[start : start + CHUNK]
        got = set(share([i.id for i in chunk]))
        chunk = [i for i in chunk if i.id in got]
        if not chunk:
            continue
        out = _core.verify_files([i.row() for i in chunk], level, budget=left)
        mine.extend(chunk)
        verdicts.extend(out)
        if any(v.stopped is not None for v in out):
            break
    return mine, verdicts
