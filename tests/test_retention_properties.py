"""Retention on random catalogs and random policies: what the plan promises, it keeps.

Each property is checked with `_core.recovery_path` on the catalog before and after the
deletion, and with a plain-Python oracle of restic's period selection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from chain_model import HOUR, Row, catalogs, key, usable_root
from hypothesis import given
from hypothesis import strategies as st
from rustybackup import NoRecoveryPath, _core
from rustybackup.retention import RetentionPolicy, plan_retention

PERIOD_NAMES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")


@st.composite
def policies(draw: st.DrawFn) -> RetentionPolicy:
    parts = []
    if draw(st.booleans()):
        parts.append(RetentionPolicy.redundancy(draw(st.integers(1, 3))))
    if draw(st.booleans()):
        parts.append(RetentionPolicy.recovery_window(timedelta(hours=draw(st.integers(1, 400)))))
    if draw(st.booleans()) or not parts:
        counts = draw(st.fixed_dictionaries({p: st.integers(0, 4) for p in PERIOD_NAMES}))
        if not any(counts.values()):
            counts["daily"] = 1
        parts.append(RetentionPolicy.keep(**counts))
    return RetentionPolicy.combine(*parts)


def path_or_none(rows: list[Row], until: int | None) -> list[str] | None:
    try:
        return _core.recovery_path(rows, until)
    except NoRecoveryPath:
        return None


def promised_instants(rows: list[Row], policy: RetentionPolicy, now_us: int) -> list[int]:
    """Instants the policy promises to keep recoverable: [floor, now] sampled at every finish."""
    by_id = {r[0]: r for r in rows}
    floors = []
    if policy.window_us is not None:
        floors.append(now_us - policy.window_us)
    if policy.full_copies is not None:
        fulls = sorted((r for r in rows if r[1] == "full" and usable_root(by_id, r) == r[0]), key=key, reverse=True)
        if fulls:
            floors.append(fulls[: policy.full_copies][-1][4])
    if not floors:
        return []
    floor = min(floors)
    instants = {floor, now_us}
    for r in rows:
        for t in (r[4] - 1, r[4], r[4] + 1):
            if floor <= t <= now_us:
                instants.add(t)
    return sorted(instants)


def oracle_period_picks(rows: list[Row], policy: RetentionPolicy, zone: str) -> set[str]:
    """restic's forget --keep-*: newest first; a point is kept when its period differs from
    the last kept one's, while that bucket's count lasts. Only usable points count."""
    by_id = {r[0]: r for r in rows}
    points = sorted((r for r in rows if r[1] != "archive_log" and usable_root(by_id, r)), key=key, reverse=True)
    tz = ZoneInfo(zone)

    def period(name: str, r: Row) -> object:
        t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=r[4])
        t = t.astimezone(tz)
        return {
            "last": r[0],
            "hourly": (t.year, t.month, t.day, t.hour),
            "daily": (t.year, t.month, t.day),
            "weekly": t.isocalendar()[:2],
            "monthly": (t.year, t.month),
            "yearly": t.year,
        }[name]

    picked: set[str] = set()
    for name, count in policy.counts().items():
        last: object = None
        for r in points:
            if count == 0:
                break
            p = period(name, r)
            if p != last:
                last = p
                count -= 1
                picked.add(r[0])
    return picked


@given(
    catalogs(),
    policies(),
    st.integers(0, 200),
    st.sampled_from(ZONES),
    st.lists(st.integers(0, 39), max_size=2),
)
def test_a_plan_keeps_every_promise(
    rows: list[Row], policy: RetentionPolicy, after_hours: int, zone: str, protect: list[int]
) -> None:
    last_finish = max((r[4] for r in rows), default=0)
    now_us = last_finish + after_hours * HOUR
    now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_us)
    protected = {rows[i][0] for i in protect if i < len(rows)}
    plan = plan_retention(rows, policy, now, tz=zone, protected=protected)

    assert [d.set_id for d in plan] == [r[0] for r in rows]
    assert all(d.reason for d in plan)
    assert all(d.reason.startswith("obsolete: ") for d in plan if not d.keep)
    kept = {d.set_id for d in plan if d.keep}
    survivors = [r for r in rows if r[0] in kept]
    by_id = {r[0]: r for r in rows}

    # Nothing kept depends on a deleted set.
    for r in survivors:
        if r[1] in ("incremental", "differential") and r[2] in by_id:
            assert r[2] in kept, f"{r[0]} kept but its parent {r[2]} is deleted"

    # Protected sets stay.
    assert protected <= kept

    # Every instant of the window / since the n-th FULL recovers exactly as before.
    for t in promised_instants(rows, policy, now_us):
        before = path_or_none(rows, t)
        if before is not None:
            assert path_or_none(survivors, t) == before, f"recovery to {t} changed"

    # Points picked by keep() are restic's picks, and each still restores with its chain.
    picked = {d.set_id for d in plan if any(f"{name} #" in d.reason for name in PERIOD_NAMES)}
    assert picked == oracle_period_picks(rows, policy, zone)
    survivors_by_id = {r[0]: r for r in survivors}
    for sid in picked:
        assert usable_root(survivors_by_id, by_id[sid]) is not None

    # The last usable FULL is never deleted without force.
    if any(r[1] == "full" and r[5] == "available" for r in rows):
        assert any(r[1] == "full" and r[5] == "available" for r in survivors)

    # No CORRUPT/EXPIRED oldest survivor while an older usable FULL could stand before it.
    if survivors:
        oldest = min(survivors, key=key)
        if oldest[5] != "available":
            assert not any(r[1] == "full" and r[5] == "available" and key(r) < key(oldest) for r in rows)

    # Reasons can be checked against the catalog.
    for d in plan:
        row = by_id[d.set_id]
        for part in d.reason.split("; "):
            if part.startswith("needed by "):
                child = by_id[part.split()[-1]]
                assert child[0] in kept and child[2] == d.set_id, part
            elif part.startswith("inside the "):
                assert policy.window_us is not None and row[4] >= now_us - policy.window_us, part
            elif part.endswith(" newest FULL"):
                assert row[1] == "full" and row[5] == "available", part
            elif part.startswith("protected"):
                assert d.set_id in protected
            elif part.startswith("oldest survivor would be "):
                corrupt = by_id[part.rsplit("(", 1)[1].rstrip(")")]
                assert corrupt[5] != "available" and key(row) < key(corrupt) and row[1] == "full"

    # Idempotence: planning again on the survivors deletes nothing more.
    again = plan_retention(survivors, policy, now, tz=zone, protected=protected)
    assert all(d.keep for d in again), [d for d in again if not d.keep]


@given(catalogs(), policies(), st.integers(0, 200))
def test_force_only_differs_on_the_last_full(rows: list[Row], policy: RetentionPolicy, after_hours: int) -> None:
    now_us = max((r[4] for r in rows), default=0) + after_hours * HOUR
    now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_us)
    safe = plan_retention(rows, policy, now)
    forced = plan_retention(rows, policy, now, force=True)
    differ = [(a, b) for a, b in zip(safe, forced, strict=True) if a.keep != b.keep]
    assert all(a.keep and not b.keep and "force=True" in a.reason for a, b in differ)
    assert len(differ) <= 2  # the last FULL, and the older FULL kept ahead of it if it is CORRUPT
