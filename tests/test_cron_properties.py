"""Property tests: croniter and cronsim as oracles, a brute-force minute-stepping oracle for
the DST rules, prev/next consistency, str and pickle round-trips, and a fuzz property."""

from __future__ import annotations

import calendar
import pickle
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cron_reference import Reference, brute_next, brute_prev
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rustybackup import CronError, CronSchedule
from rustybackup.testing import cron_expressions

croniter_mod = pytest.importorskip("croniter")
cronsim_mod = pytest.importorskip("cronsim")

UTC = UTC
DST_ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Europe/London", "America/Santiago"]


def expressions(star_steps_in_days: bool = True) -> st.SearchStrategy[str]:
    """The public strategy, limited to what both peers read as Vixie cron does (see
    ``cron_expressions``: no one-value ranges, no ``a/n``, no day-of-week 7)."""
    return cron_expressions(peer_safe=True, star_steps_in_days=star_steps_in_days)


def instants(lo: int = 1970, hi: int = 2199) -> st.SearchStrategy[datetime]:
    return st.datetimes(datetime(lo, 1, 1), datetime(hi, 12, 31)).map(lambda d: d.replace(tzinfo=UTC))


def schedule_or_none(expr: str, tz: str = "UTC") -> CronSchedule | None:
    try:
        return CronSchedule(expr, tz)
    except CronError as exc:
        assert "can never fire" in str(exc), exc
        return None


@given(expressions(), instants())
def test_next_after_agrees_with_cronsim_in_utc(expr: str, t: datetime) -> None:
    s = schedule_or_none(expr)
    assume(s is not None)
    assert s is not None
    expected = next(cronsim_mod.CronSim(expr, t))
    assert s.next_after(t) == expected


@given(expressions(), instants())
def test_prev_before_agrees_with_cronsim_in_utc(expr: str, t: datetime) -> None:
    s = schedule_or_none(expr)
    assume(s is not None)
    assert s is not None
    expected = next(cronsim_mod.CronSim(expr, t, reverse=True))
    assert s.prev_before(t) == expected


# croniter treats a '*/n' day field as restricted (Vixie does not), so it is compared on
# expressions whose day fields are '*' or do not start with '*'; that rule has hand cases.
@given(expressions(star_steps_in_days=False), instants())
def test_next_after_agrees_with_croniter_in_utc(expr: str, t: datetime) -> None:
    s = schedule_or_none(expr)
    assume(s is not None)
    assert s is not None
    expected = croniter_mod.croniter(expr, t).get_next(datetime)
    assert s.next_after(t) == expected


@settings(max_examples=40)
@given(
    st.sampled_from(
        [
            "*/7 * * * *",
            "30 2 * * *",
            "0,30 1,2 * * *",
            "*/20 1-3 * * *",
            "15 * * * *",
            "45 1 * * 0",
            "0 */2 * * *",
            "30 2 * * 1-5",
            "* 2 * * *",
            "0 0,2 L * *",
        ]
    ),
    st.sampled_from(DST_ZONES),
    st.datetimes(datetime(1975, 1, 1), datetime(2199, 1, 1)),
    st.booleans(),
)
def test_next_and_prev_agree_with_the_brute_force_dst_oracle(expr: str, zone: str, t: datetime, near: bool) -> None:
    z = ZoneInfo(zone)
    start = t.replace(tzinfo=z)
    if near:
        # move next to this year's transitions, where the rules matter
        jan = datetime(t.year, 1, 1, tzinfo=UTC)
        offsets = [(jan + timedelta(days=d)).astimezone(z).utcoffset() for d in range(0, 366, 1)]
        changes = [d for d in range(1, len(offsets)) if offsets[d] != offsets[d - 1]]
        assume(changes)
        start = (jan + timedelta(days=changes[t.minute % len(changes)] - 1, minutes=t.second * 30)).astimezone(z)
    s = CronSchedule(expr, z)
    span = timedelta(days=3) - timedelta(minutes=1)
    expected = brute_next(expr, z, start, 60 * 24 * 3)
    got = s.next_after(start)
    if expected is None:
        assert got.astimezone(UTC) > start.astimezone(UTC) + span
    else:
        assert got.astimezone(UTC) == expected
    expected = brute_prev(expr, z, start, 60 * 24 * 3)
    got = s.prev_before(start)
    if expected is None:
        assert got.astimezone(UTC) < start.astimezone(UTC) - span
    else:
        assert got.astimezone(UTC) == expected


@given(expressions(), st.sampled_from(["UTC", *DST_ZONES]), instants(1971, 2199))
def test_next_after_then_prev_before_round_trips(expr: str, zone: str, t: datetime) -> None:
    s = schedule_or_none(expr, zone)
    assume(s is not None)
    assert s is not None
    nxt = s.next_after(t)
    assert nxt.astimezone(UTC) > t
    assert s.matches(nxt)
    back = s.prev_before(nxt)
    assert back.astimezone(UTC) <= t
    assert s.next_after(back).astimezone(UTC) == nxt.astimezone(UTC)


@given(expressions(), st.sampled_from(["UTC", *DST_ZONES]), st.text(max_size=8))
def test_str_and_pickle_round_trip(expr: str, zone: str, seed: str) -> None:
    s = schedule_or_none(expr, zone)
    assume(s is not None)
    assert s is not None
    again = CronSchedule(str(s), zone)
    assert again == s and hash(again) == hash(s) and str(again) == str(s)
    assert pickle.loads(pickle.dumps(s)) == s


ALPHABET = "0123456789*/-,?#LWH() @abcdefghijklmnopqrstuvwxyzJANFEBMONSUN\t\n"


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(alphabet=ALPHABET, max_size=40)), st.text(max_size=5))
def test_arbitrary_text_only_ever_raises_cron_error(text: str, seed: str) -> None:
    try:
        s = CronSchedule(text, seed=seed)
    except CronError:
        return
    # whatever parses must search, normalize and describe without error
    t = datetime(2025, 1, 1, tzinfo=UTC)
    assert s.next_after(t) > t
    assert s.prev_before(t) < t
    assert CronSchedule(str(s)) == s
    assert s.describe()


@given(st.text(max_size=30))
def test_arbitrary_zone_names_only_raise_cron_error(name: str) -> None:
    try:
        CronSchedule("* * * * *", name)
    except CronError as exc:
        assert "time zone" in str(exc)
    except ValueError:  # zoneinfo rejects some keys itself before lookup (e.g. absolute paths)
        raise


def _no_transition_between(zone: ZoneInfo, a: datetime, b: datetime) -> bool:
    """True when the zone's offset is the same at every half day from a-1d to b+1d."""
    step = timedelta(hours=12)
    cur = a - timedelta(days=1)
    first = cur.astimezone(zone).utcoffset()
    while cur <= b + timedelta(days=1):
        if cur.astimezone(zone).utcoffset() != first:
            return False
        cur += step
    return True


# Away from transitions both peers agree with the DST-free meaning; at transitions they
# differ from each other, and DESIGN.md decides (test_cron_dst.py and the brute-force oracle).
@given(expressions(star_steps_in_days=False), st.sampled_from(DST_ZONES), instants(1971, 2199))
def test_next_after_agrees_with_both_peers_in_dst_zones_away_from_transitions(
    expr: str, zone: str, t: datetime
) -> None:
    s = schedule_or_none(expr, zone)
    assume(s is not None)
    assert s is not None
    z = ZoneInfo(zone)
    local = t.astimezone(z)
    got = s.next_after(local)
    assume(got - local < timedelta(days=60) and _no_transition_between(z, t, got.astimezone(UTC)))
    assert got == next(cronsim_mod.CronSim(expr, local))
    assert got == croniter_mod.croniter(expr, local).get_next(datetime)


def extended_expressions() -> st.SearchStrategy[str]:
    """``?``, ``L``, ``LW``, ``nW``, ``d#n``, ``dL`` mixed into peer-safe fields (cronsim has
    no ``H`` and no macros; peer_safe leaves them out)."""
    return cron_expressions(extensions=True, peer_safe=True)


@given(
    extended_expressions(),
    instants(1970, 2199),
)
def test_day_extensions_agree_with_cronsim_in_utc(expr: str, t: datetime) -> None:
    s = schedule_or_none(expr)
    assume(s is not None)
    assert s is not None
    assert s.next_after(t) == next(cronsim_mod.CronSim(expr, t))
    assert s.prev_before(t) == next(cronsim_mod.CronSim(expr, t, reverse=True))


@given(
    extended_expressions(),
    instants(1970, 2199),
)
def test_matches_agrees_with_the_reference_matcher_in_utc(expr: str, t: datetime) -> None:
    s = schedule_or_none(expr)
    assume(s is not None)
    assert s is not None
    assert s.matches(t) == Reference.parse(expr).wall_matches(t.replace(tzinfo=None))
    # and next_after lands on a minute the reference accepts
    assert Reference.parse(expr).wall_matches(s.next_after(t).replace(tzinfo=None))


@st.composite
def last_day_ranges(draw: st.DrawFn) -> str:
    """Expressions whose day-of-month holds an ``N-L`` or ``N-L/s`` range (day N to the
    month's last day), possibly beside plain days, with peer-safe other fields."""
    start = draw(st.integers(1, 31))
    step = draw(st.none() | st.integers(1, 31))
    term = f"{start}-{draw(st.sampled_from('Ll'))}" + ("" if step is None else f"/{step}")
    extra = [str(d) for d in draw(st.lists(st.integers(1, 31), max_size=2))]
    dom = ",".join(draw(st.permutations([term, *extra])))
    month = draw(st.sampled_from(["*", "2", "2,4", "1-6", "*/3", "11", "FEB"]))
    dow = draw(st.sampled_from(["*", "1-5", "0", "*/2"]))
    return f"{draw(st.integers(0, 59))} {draw(st.integers(0, 23))} {dom} {month} {dow}"


def as_cronsim_reads_it(expr: str) -> str:
    """cronsim 2.8 has no ``N-L``; a day past a month's end never exists, so it is ``N-31``."""
    minute, hour, dom, month, dow = expr.split()
    return " ".join([minute, hour, dom.upper().replace("-L", "-31"), month, dow])


@given(last_day_ranges(), instants(1970, 2199))
def test_ranges_to_the_last_day_agree_with_cronsim_in_utc(expr: str, t: datetime) -> None:
    peer = as_cronsim_reads_it(expr)
    try:
        s = CronSchedule(expr)
    except CronError as exc:
        assert "can never fire" in str(exc), exc
        with pytest.raises(cronsim_mod.CronSimError):
            cronsim_mod.CronSim(peer, t)
        return
    assert s.next_after(t) == next(cronsim_mod.CronSim(peer, t))
    assert s.prev_before(t) == next(cronsim_mod.CronSim(peer, t, reverse=True))
    again = CronSchedule(str(s))
    assert again == s and str(again) == str(s)


@given(st.integers(1, 31), st.integers(1, 31), st.dates(datetime(1970, 1, 1).date(), datetime(2199, 12, 31).date()))
def test_a_range_to_the_last_day_holds_exactly_the_days_from_n_in_steps(start: int, step: int, day: date) -> None:
    """The calendar as the oracle: day d of any month matches ``N-L/s`` exactly when
    N <= d and s divides d - N (every such d up to the month's real last day)."""
    s = CronSchedule(f"0 0 {start}-L/{step} * *")
    t = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert s.matches(t) == (start <= day.day and (day.day - start) % step == 0)
    last = calendar.monthrange(day.year, day.month)[1]
    if start <= last:
        # the month's last firing is the last day reachable from N in steps of s
        final = start + (last - start) // step * step
        month_end = datetime(day.year, day.month, last, 23, 59, tzinfo=UTC)
        assert s.prev_before(month_end) == datetime(day.year, day.month, final, tzinfo=UTC)
