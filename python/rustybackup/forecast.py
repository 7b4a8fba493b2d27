"""Forecasts of a job's duration and size from its run history, with a P90.

The method (chosen to need no dependency and to stay explainable in one paragraph):

1. **Trend**: the Theil-Sen line through the last ``window`` completed runs (value against
   time in days): the slope is the median of all pairwise slopes, the intercept the median
   of ``y - slope * t``. It follows growth (data sets grow; durations with them) and ignores
   up to ~29% of wild points, such as a rerun after a failure or a night with a cold cache,
   which would drag a least-squares line.
2. **Weekly seasonality**: the median of the trend's residuals per local weekday (the job's
   zone), used for a weekday with at least ``MIN_SEASON_RUNS`` runs. Sunday's bigger
   backups and Monday's post-weekend incrementals get their own offset; a median keeps
   one odd Sunday from moving it.
3. **Spread**: what is left (residual minus the weekday offset) gives an empirical upper
   quantile; P90 = point forecast + the ``ceil(0.9 (n + 1))``-th smallest residual
   (the distribution-free rank that covers 90% of a future draw from the same residuals;
   with fewer than 9 runs that rank does not exist and the largest residual is used).

No distribution is assumed, so skewed durations (a run is often a little slower, rarely
much faster) give an honest P90. Values are clamped at zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from statistics import median

from .enums import ExecutionStatus
from .jobs import BackupExecution
from .windows import BackupWindow

__all__ = [
    "DEFAULT_WINDOW",
    "MIN_RUNS",
    "MIN_SEASON_RUNS",
    "Forecast",
    "JobForecast",
    "fit",
    "forecast_job",
    "p90_overrun",
]

#: How many recent runs the fit uses: about two months of nightly runs.
DEFAULT_WINDOW = 60
#: Fewer runs than this give no forecast (a line through two points says little).
MIN_RUNS = 3
MIN_SEASON_RUNS = 3
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Forecast:
    """One quantity's forecast at one instant."""

    p50: float
    p90: float
    #: Trend slope per day (units of the quantity per day).
    slope_per_day: float
    #: The weekday offset applied (0.0 when the weekday had too few runs).
    weekday_offset: float
    n_runs: int


@dataclass(frozen=True)
class JobForecast:
    """A job's duration (seconds) and sizes (bytes) at ``at``; None where history has none."""

    job_id: str
    at: datetime
    duration: Forecast | None
    bytes_read: Forecast | None
    bytes_written: Forecast | None

    @property
    def duration_p90(self) -> timedelta | None:
        return None if self.duration is None else timedelta(seconds=self.duration.p90)

    @property
    def duration_p50(self) -> timedelta | None:
        return None if self.duration is None else timedelta(seconds=self.duration.p50)


def _days(t: datetime) -> float:
    return (t - _EPOCH).total_seconds() / 86400.0


def _theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i]
    ]
    slope = median(slopes) if slopes else 0.0
    intercept = median(y - slope * x for x, y in zip(xs, ys, strict=True))
    return slope, intercept


def upper_rank(n: int, q: float = 0.9) -> int:
    """The 0-based order statistic that is a distribution-free ``q`` upper bound for n draws."""
    return min(n - 1, math.ceil(q * (n + 1)) - 1)


def fit(
    points: Sequence[tuple[datetime, float]],
    at: datetime,
    zone: tzinfo = UTC,
    q: float = 0.9,
) -> Forecast | None:
    """Forecast of the value at ``at`` from ``(time, value)`` points (None below MIN_RUNS)."""
    if len(points) < MIN_RUNS:
        return None
    xs = [_days(t) for t, _ in points]
    ys = [float(v) for _, v in points]
    slope, intercept = _theil_sen(xs, ys)
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    by_day: dict[int, list[float]] = {}
    for (t, _), r in zip(points, residuals, strict=True):
        by_day.setdefault(t.astimezone(zone).weekday(), []).append(r)
    offsets = {d: median(rs) for d, rs in by_day.items() if len(rs) >= MIN_SEASON_RUNS}
    left = sorted(
        r - offsets.get(t.astimezone(zone).weekday(), 0.0) for (t, _), r in zip(points, residuals, strict=True)
    )
    offset = offsets.get(at.astimezone(zone).weekday(), 0.0)
    point = intercept + slope * _days(at) + offset
    # The median of what is left is ~0 by construction; adding it keeps p50 honest anyway.
    p50 = point + median(left)
    p90 = point + left[upper_rank(len(left), q)]
    return Forecast(max(0.0, p50), max(0.0, p90, p50), slope, offset, len(points))


def forecast_job(
    job_id: str,
    runs: Iterable[BackupExecution],
    at: datetime,
    zone: tzinfo = UTC,
    window: int = DEFAULT_WINDOW,
) -> JobForecast:
    """Forecasts from a job's executions (any order; only COMPLETED runs count)."""
    done = sorted(
        (r for r in runs if r.status is ExecutionStatus.COMPLETED and r.started_at and r.finished_at),
        key=lambda r: r.started_at or _EPOCH,
    )[-window:]
    durations = [(r.started_at, r.duration.total_seconds()) for r in done if r.started_at and r.duration is not None]
    read = [(r.started_at, float(r.bytes_read)) for r in done if r.started_at and r.bytes_read is not None]
    written = [(r.started_at, float(r.bytes_written)) for r in done if r.started_at and r.bytes_written is not None]
    return JobForecast(
        job_id,
        at,
        fit(durations, at, zone),
        fit(read, at, zone),
        fit(written, at, zone),
    )


def p90_overrun(window: BackupWindow | None, start: datetime, p90: timedelta | None) -> str | None:
    """Why a run starting at ``start`` for ``p90`` does not fit ``window``, or None when it does."""
    if window is None or p90 is None:
        return None
    shown = start.isoformat()
    start = start.astimezone(UTC)  # real-time arithmetic across a DST change
    if not window.is_active(start):
        return f"its cron time {shown} is outside window {window.id}"
    closes = window.closes_at(start)
    if closes is not None and start + p90 > closes.astimezone(UTC):
        return f"P90 {_hm(p90)} from {shown} overruns window {window.id} by {_hm(start + p90 - closes)}"
    return None


def _hm(d: timedelta) -> str:
    minutes = round(d.total_seconds() / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"
