"""CronSchedule against croniter and cronsim, side by side in one group per case.

Run: pytest benches/test_cron_bench.py --benchmark-only --benchmark-group-by=group
Set RUSTYBACKUP_BENCH_LARGE=1 for the 10,000-expression parse case (default 1,000).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rustybackup import CronSchedule

croniter_mod: Any
cronsim_mod: Any
try:
    import croniter as croniter_mod
except ImportError:  # pragma: no cover - peer missing
    croniter_mod = None
try:
    import cronsim as cronsim_mod
except ImportError:  # pragma: no cover - peer missing
    cronsim_mod = None

EXPRS = ["*/15 * * * *", "0 2 * * *", "30 4 1,15 * 5", "0 0 29 2 *", "0 9-17 * * 1-5"]
START = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)
PARSE_COUNT = 10_000 if os.environ.get("RUSTYBACKUP_BENCH_LARGE") else 1_000
LIBS = ["rustybackup", "cronsim", "croniter"]


def _need(lib: str) -> None:
    if lib == "croniter" and croniter_mod is None:
        pytest.skip("croniter is not installed (pip install croniter)")
    if lib == "cronsim" and cronsim_mod is None:
        pytest.skip("cronsim is not installed (pip install cronsim)")


def _warm_next(lib: str, expr: str) -> Callable[[], object]:
    if lib == "rustybackup":
        s = CronSchedule(expr)
        return lambda: s.next_after(START)
    if lib == "cronsim":
        it = cronsim_mod.CronSim(expr, START)
        return lambda: next(it)
    itr = croniter_mod.croniter(expr, START)
    return lambda: itr.get_next(datetime)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("expr", EXPRS)
def test_warm_next(benchmark: Any, expr: str, lib: str) -> None:
    _need(lib)
    benchmark.group = f"cron warm next: {expr}"
    result = benchmark(_warm_next(lib, expr))
    assert isinstance(result, datetime)


@pytest.mark.parametrize("lib", ["rustybackup", "cronsim"])
@pytest.mark.parametrize("expr", EXPRS)
def test_next_1000(benchmark: Any, expr: str, lib: str) -> None:
    _need(lib)
    benchmark.group = f"cron next 1000: {expr}"
    if lib == "rustybackup":
        s = CronSchedule(expr)
        result = benchmark(s.next_n, START, 1000)
    else:
        result = benchmark(lambda: list(itertools.islice(cronsim_mod.CronSim(expr, START), 1000)))
    assert len(result) == 1000


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("expr", EXPRS)
def test_cold_parse_and_first_next(benchmark: Any, expr: str, lib: str) -> None:
    _need(lib)
    benchmark.group = f"cron cold parse+next: {expr}"
    if lib == "rustybackup":
        fn: Callable[[], object] = lambda: CronSchedule(expr).next_after(START)  # noqa: E731
    elif lib == "cronsim":
        fn = lambda: next(cronsim_mod.CronSim(expr, START))  # noqa: E731
    else:
        fn = lambda: croniter_mod.croniter(expr, START).get_next(datetime)  # noqa: E731
    assert isinstance(benchmark(fn), datetime)


def _distinct_expressions(n: int) -> list[str]:
    out = []
    for i in range(n):
        dow = f"{(i // 7) % 4}-{4 + i % 3}" if i % 2 else str((i // 7) % 7)
        out.append(f"{i % 60} {(i // 60) % 24} {1 + (i // 1440) % 28} * {dow}")
    assert len(set(out)) == n
    return out


@pytest.mark.parametrize("lib", LIBS)
def test_parse_many(benchmark: Any, lib: str) -> None:
    _need(lib)
    exprs = _distinct_expressions(PARSE_COUNT)
    benchmark.group = f"cron parse {PARSE_COUNT} distinct expressions"
    if lib == "rustybackup":
        result = benchmark.pedantic(lambda: [CronSchedule(e) for e in exprs], rounds=3, iterations=1)
    elif lib == "cronsim":
        result = benchmark.pedantic(lambda: [cronsim_mod.CronSim(e, START) for e in exprs], rounds=3, iterations=1)
    else:
        result = benchmark.pedantic(lambda: [croniter_mod.croniter(e, START) for e in exprs], rounds=3, iterations=1)
    assert len(result) == PARSE_COUNT
