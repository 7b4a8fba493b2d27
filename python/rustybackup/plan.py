"""``rustybackup plan``: start times that fit every job's P90 into its window.

The planner is a greedy list scheduler on a grid of ``step`` (5 minutes by default):

1. Each job with a window and a forecast gets that window's next period (``opens`` to
   ``closes``) and a length, its P90 duration. Jobs without a window keep their cron time
   and count as load; jobs without history cannot be planned and are reported so.
2. Jobs are placed least slack first (window length minus P90): a job that only just fits
   its short window is placed before a job that could go anywhere in a long night, which
   is where "highest priority first" goes wrong (the long job takes the start of the night
   and the short window is gone). Ties: higher priority, then longer P90, then id.
3. A job goes to the grid start inside its period where the peak number of jobs already
   running during its P90 interval is lowest, the earliest such start on ties, and never
   where that peak reaches ``concurrency``. Lowest-peak placement is what spreads jobs
   across the night instead of stacking them at the window's opening.

A job whose P90 does not fit (longer than its window, or no slot left under the limit) is
reported with why and how much it overruns, and is still placed where it overruns least,
so the others are planned around it.

:func:`simulate` replays a schedule the way a scheduler runs it: a job becomes ready at
its start and runs when one of ``concurrency`` workers is free (priority order); the bench
uses it to compare the plan with the naive "everything at the window's opening".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import ConfigError
from .windows import BackupWindow

__all__ = ["Placement", "PlanTask", "Run", "plan", "simulate"]

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class PlanTask:
    """One job to place: its window (or None), P90 (or None) and current next start."""

    job_id: str
    priority: int
    window: BackupWindow | None
    p90: timedelta | None
    cron_start: datetime


@dataclass(frozen=True)
class Placement:
    job_id: str
    start: datetime
    end: datetime | None
    opens: datetime | None
    closes: datetime | None
    fits: bool
    note: str


def _utc(t: datetime) -> datetime:
    # Arithmetic between datetimes of one ZoneInfo is wall-clock arithmetic (a DST night
    # would gain or lose an hour): every sum and difference here is done in UTC.
    return t.astimezone(UTC)


def _period(window: BackupWindow, after: datetime) -> tuple[datetime, datetime]:
    opens = _utc(window.next_open(after))
    closes = window.closes_at(opens)
    return opens, _utc(closes) if closes is not None else opens + _DAY


def _peak(placed: Sequence[tuple[datetime, datetime]], start: datetime, end: datetime) -> int:
    """The largest number of ``placed`` intervals running at once inside ``[start, end)``."""
    events: list[tuple[datetime, int]] = []
    for s, e in placed:
        if s < end and e > start:
            events.append((max(s, start), 1))
            events.append((min(e, end), -1))
    events.sort(key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same instant
    level = best = 0
    for _, d in events:
        level += d
        best = max(best, level)
    return best


def plan(
    tasks: Iterable[PlanTask],
    after: datetime,
    concurrency: int = 1,
    step: timedelta = timedelta(minutes=5),
) -> list[Placement]:
    """Suggested starts for every task (in the order of ``tasks``)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency: expected a whole number of at least 1, got {concurrency!r}")
    if step <= timedelta(0):
        raise ConfigError(f"step: must be positive, got {step}")
    if after.tzinfo is None:
        raise ConfigError("plan: 'after' must be an aware datetime")
    items = [PlanTask(t.job_id, t.priority, t.window, t.p90, _utc(t.cron_start)) for t in tasks]
    placed: list[tuple[datetime, datetime]] = []
    result: dict[str, Placement] = {}
    flexible: list[tuple[PlanTask, datetime, datetime]] = []
    for t in items:
        if t.p90 is None:
            result[t.job_id] = Placement(
                t.job_id,
                t.cron_start,
                None,
                None,
                None,
                True,
                "no completed runs yet: no forecast, kept at its cron time",
            )
        elif t.window is None:
            end = t.cron_start + t.p90
            placed.append((t.cron_start, end))
            result[t.job_id] = Placement(
                t.job_id,
                t.cron_start,
                end,
                None,
                None,
                True,
                "no window: kept at its cron time (counted as load)",
            )
        else:
            opens, closes = _period(t.window, after)
            flexible.append((t, opens, closes))

    def slack(
        entry: tuple[PlanTask, datetime, datetime],
    ) -> tuple[timedelta, int, timedelta, str]:
        t, opens, closes = entry
        p90 = t.p90 or timedelta(0)
        return (closes - opens - p90, -t.priority, -p90, t.job_id)

    for t, opens, closes in sorted(flexible, key=slack):
        p90 = t.p90 or timedelta(0)
        best: tuple[int, datetime] | None = None
        start = opens
        while start + p90 <= closes:
            peak = _peak(placed, start, start + p90)
            if peak < concurrency and (best is None or peak < best[0]):
                best = (peak, start)
                if peak == 0:
                    break
            start += step
        if best is not None:
            s = best[1]
            placed.append((s, s + p90))
            result[t.job_id] = Placement(t.job_id, s, s + p90, opens, closes, True, "fits")
            continue
        if p90 > closes - opens:
            why = f"P90 {_fmt(p90)} is longer than window {t.window.id if t.window else '-'} ({_fmt(closes - opens)})"
        else:
            why = f"no free slot under the concurrency limit {concurrency} in window {t.window.id if t.window else '-'}"
        s = _least_overrun(placed, opens, p90, step, concurrency)
        placed.append((s, s + p90))
        over = s + p90 - closes
        result[t.job_id] = Placement(
            t.job_id,
            s,
            s + p90,
            opens,
            closes,
            False,
            f"does not fit: {why}; overruns by {_fmt(over)}",
        )
    return [result[t.job_id] for t in items]


def _least_overrun(
    placed: Sequence[tuple[datetime, datetime]],
    opens: datetime,
    p90: timedelta,
    step: timedelta,
    concurrency: int,
) -> datetime:
    """The earliest grid start at or after ``opens`` with a free worker for the whole P90."""
    start = opens
    # Once every placed job has ended a worker is free, so the loop ends by then.
    while _peak(placed, start, start + p90) >= concurrency:
        start += step
    return start


def _fmt(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class Run:
    job_id: str
    start: datetime
    end: datetime


def simulate(
    starts: dict[str, datetime],
    durations: dict[str, timedelta],
    priorities: dict[str, int],
    concurrency: int = 1,
) -> dict[str, Run]:
    """When each job really runs if it becomes ready at ``starts`` and ``concurrency`` workers run jobs.

    A free worker takes the ready job of highest priority (ties: earlier start, then id), as
    the scheduler orders a tick's due jobs.
    """
    starts = {j: _utc(t) for j, t in starts.items()}
    pending = sorted(starts, key=lambda j: (starts[j], -priorities[j], j))
    free_at = [min(starts.values(), default=datetime.min.replace(tzinfo=UTC))] * concurrency
    runs: dict[str, Run] = {}
    while pending:
        worker = min(range(concurrency), key=lambda w: free_at[w])
        now = max(free_at[worker], min(starts[j] for j in pending))
        ready = [j for j in pending if starts[j] <= now]
        job = min(ready, key=lambda j: (-priorities[j], starts[j], j))
        pending.remove(job)
        runs[job] = Run(job, now, now + durations[job])
        free_at[worker] = now + durations[job]
    return runs
