"""Forecasts: Theil-Sen trend (exact under contamination, a median by definition), weekday
offsets in the job's zone, the distribution-free P90 rank, and history rows as input."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup.enums import ExecutionStatus
from rustybackup.forecast import _theil_sen, fit, forecast_job, upper_rank
from rustybackup.jobs import BackupExecution

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)  # a Monday


def nightly(values: list[float], start: datetime = T0) -> list[tuple[datetime, float]]:
    return [(start + timedelta(days=i), v) for i, v in enumerate(values)]


@settings(deadline=None, max_examples=200)
@given(
    a=st.floats(0, 1e6),
    b=st.floats(-1e3, 1e3),
    n=st.integers(10, 50),
    data=st.data(),
)
def test_the_trend_is_exact_when_fewer_than_a_fifth_of_the_runs_are_wild(
    a: float, b: float, n: int, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, n // 5))
    wild = set(data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k, unique=True)))
    xs = [float(i) for i in range(n)]
    ys = [a + b * x + (data.draw(st.floats(-1e7, 1e7)) if i in wild else 0.0) for i, x in enumerate(xs)]
    slope, _ = _theil_sen(xs, ys)
    # Clean pairs outnumber every pair touching a wild run, so the median pairwise slope is b.
    assert abs(slope - b) <= 1e-6 * max(1.0, abs(b)) + 1e-6


@settings(deadline=None, max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.floats(-1e6, 1e6)),
        min_size=2,
        max_size=40,
        unique_by=lambda p: p[0],
    )
)
def test_the_slope_is_a_median_of_the_pairwise_slopes(
    points: list[tuple[int, float]],
) -> None:
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    slope, _ = _theil_sen(xs, ys)
    pair = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))]
    # The oracle is the definition: at most half the pairwise slopes lie strictly on either side.
    assert sum(s > slope + 1e-9 * abs(slope) for s in pair) <= len(pair) / 2
    assert sum(s < slope - 1e-9 * abs(slope) for s in pair) <= len(pair) / 2


def test_a_clean_linear_history_forecasts_the_line() -> None:
    f = fit(nightly([600 + 10 * i for i in range(30)]), T0 + timedelta(days=30))
    assert f is not None
    assert abs(f.p50 - 900) < 1e-6 and abs(f.p90 - 900) < 1e-6 and abs(f.slope_per_day - 10) < 1e-9


def test_weekday_offsets_follow_the_jobs_zone() -> None:
    # 23:30 UTC is the next morning in Berlin: the big runs are Sundays there, Saturdays in UTC.
    start = datetime(2026, 1, 3, 23, 30, tzinfo=UTC)  # Saturday UTC, Sunday in Berlin
    values = [3000.0 if i % 7 == 0 else 1000.0 for i in range(42)]
    pts = nightly(values, start)
    sunday_berlin = start + timedelta(days=42)
    berlin = fit(pts, sunday_berlin, ZoneInfo("Europe/Berlin"))
    utc = fit(pts, sunday_berlin + timedelta(days=1), UTC)
    assert berlin is not None and utc is not None
    assert abs(berlin.p50 - 3000) < 1e-6 and abs(berlin.weekday_offset - 2000) < 1e-6
    assert abs(utc.p50 - 1000) < 1e-6  # Sunday in UTC is an ordinary day


def test_upper_rank_is_the_distribution_free_order_statistic() -> None:
    assert [upper_rank(n) for n in (1, 5, 9, 10, 19, 20, 99)] == [
        0,
        4,
        8,
        9,
        17,
        18,
        89,
    ]


def test_p90_covers_about_nine_in_ten_future_runs_of_a_noisy_trend() -> None:
    rng = random.Random(19)
    hits = trials = 0
    for _ in range(600):
        values = [1800 + 20 * i + rng.gauss(0, 120) for i in range(61)]
        f = fit(nightly(values[:60]), T0 + timedelta(days=60))
        assert f is not None
        trials += 1
        hits += values[60] <= f.p90
    coverage = hits / trials
    # ceil(0.9 (n + 1)) of n = 60 residuals is rank 55: 55/61 = 0.90 expected; 600 seeded trials.
    assert 0.85 <= coverage <= 0.95, coverage


def test_too_little_history_gives_no_forecast() -> None:
    assert fit(nightly([1.0, 2.0]), T0) is None


def run(
    i: int,
    seconds: float,
    status: ExecutionStatus = ExecutionStatus.COMPLETED,
    read: int | None = 100,
) -> BackupExecution:
    start = T0 + timedelta(days=i)
    return BackupExecution(
        f"e{i}",
        "j",
        start,
        start,
        start + timedelta(seconds=seconds),
        status,
        bytes_read=read,
        bytes_written=read // 2 if read else None,
    )


@settings(deadline=None, max_examples=50)
@given(st.lists(st.sampled_from(list(ExecutionStatus)), min_size=0, max_size=20))
def test_only_completed_runs_count(statuses: list[ExecutionStatus]) -> None:
    runs = [run(i, 100.0 + i, s) for i, s in enumerate(statuses)]
    done = [r for r in runs if r.status is ExecutionStatus.COMPLETED]
    got = forecast_job("j", reversed(runs), T0 + timedelta(days=30))
    want = fit(
        [(r.started_at or T0, (r.duration or timedelta()).total_seconds()) for r in done],
        T0 + timedelta(days=30),
    )
    assert got.duration == want
    if len(done) < 3:
        assert got.duration is None and got.bytes_read is None
        return
    assert got.bytes_read is not None and got.bytes_read.p50 == 100
    assert got.bytes_written is not None and got.bytes_written.p50 == 50


def test_forecast_job_uses_the_newest_runs_only() -> None:
    old = [run(i, 10_000.0) for i in range(40)]
    new = [run(40 + i, 600.0) for i in range(10)]
    f = forecast_job("j", old + new, T0 + timedelta(days=50), window=10)
    assert f.duration is not None and abs(f.duration.p90 - 600) < 1e-6
    assert f.duration_p90 == timedelta(seconds=600)
