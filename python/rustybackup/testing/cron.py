"""Strategies for cron expressions and :class:`~rustybackup.CronSchedule` objects.

Expressions are valid by construction: every field is built from terms whose value sets are
known here, day-of-month values are drawn only up to the longest month the month field
allows (so ``0 0 30 2 *``, which can never fire, is not generated), and a day field with a
Quartz/cronie extension (``L``, ``LW``, ``nW``, ``d#n``, ``dL``) is never paired with a
``*/n`` in the other day field: a star there switches Vixie cron's day rule from OR to AND
and could leave no matching day (``15W`` and ``*/7`` never meet: 15W is never a Sunday).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

from hypothesis import strategies as st

from ..cron import CronSchedule

__all__ = ["DST_ZONES", "MACROS", "cron_expressions", "schedules"]

MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
"""The macros :class:`CronSchedule` accepts (``@reboot`` is not a schedule)."""

DST_ZONES = ("America/New_York", "Europe/Berlin", "Europe/London", "Australia/Lord_Howe", "America/Santiago")
"""Zones whose transitions exercise the DST rules: both hemispheres, and Lord Howe's 30-minute shift."""

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# Longest length of each month over the Gregorian cycle (February has a 29th in leap years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class _Spec:
    lo: int
    hi: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_MINUTE = _Spec(0, 59)
_HOUR = _Spec(0, 23)
_MONTH = _Spec(1, 12, _MONTH_NAMES, 1)


def _dow(peer_safe: bool) -> _Spec:
    # 7 is Sunday too (Vixie); croniter and cronsim disagree on it inside ranges, so peer-safe omits it.
    return _Spec(0, 6 if peer_safe else 7, _DAY_NAMES, 0)


@st.composite
def _value(draw: st.DrawFn, spec: _Spec, lo: int, hi: int, names: bool) -> tuple[int, str]:
    v = draw(st.integers(lo, hi))
    index = v - spec.name_base
    if names and spec.names and 0 <= index < len(spec.names) and draw(st.booleans()):
        name = spec.names[index]
        return v, draw(st.sampled_from([name, name.lower(), name.capitalize()]))
    return v, str(v)


@st.composite
def _term(draw: st.DrawFn, spec: _Spec, hi: int, names: bool, peer_safe: bool) -> tuple[frozenset[int], str]:
    """One list item and the values it selects: ``a``, ``a-b``, ``a-b/n`` or ``a/n``."""
    kind = draw(
        st.sampled_from(
            ["value", "range", "range_step", "start_step"] if not peer_safe else ["value", "range", "range_step"]
        )
    )
    a, a_text = draw(_value(spec, spec.lo, hi, names))
    if kind == "value":
        return frozenset({a}), a_text
    span = spec.hi - spec.lo + 1
    if kind == "start_step":
        # `a/n` runs from a to the end of the field (Vixie, cronie); peers read it differently.
        n = draw(st.integers(1, span))
        return frozenset(range(a, spec.hi + 1, n)), f"{a_text}/{n}"
    # peer-safe keeps a < b: croniter reads day-of-week "0-0" as every day and cronsim reads
    # "5-5/2" as "5/2"; a one-value range is valid cron and means the value alone.
    b_lo = a + 1 if peer_safe else a
    if b_lo > hi:
        return frozenset({a}), a_text
    b, b_text = draw(_value(spec, b_lo, hi, names))
    if kind == "range":
        return frozenset(range(a, b + 1)), f"{a_text}-{b_text}"
    n = draw(st.integers(1, span))
    return frozenset(range(a, b + 1, n)), f"{a_text}-{b_text}/{n}"


@st.composite
def _field(
    draw: st.DrawFn, spec: _Spec, *, hi: int | None = None, names: bool, peer_safe: bool, star_steps: bool = True
) -> tuple[frozenset[int], str]:
    """A whole field: ``*``, ``*/n`` or a list of one to three terms."""
    top = spec.hi if hi is None else hi
    choices = ["star", "list", "list"] + (["star_step"] if star_steps else [])
    kind = draw(st.sampled_from(choices))
    if kind == "star":
        return frozenset(range(spec.lo, spec.hi + 1)), "*"
    if kind == "star_step":
        n = draw(st.integers(1, spec.hi - spec.lo + 1))
        return frozenset(range(spec.lo, spec.hi + 1, n)), f"*/{n}"
    terms = draw(st.lists(_term(spec, top, names, peer_safe), min_size=1, max_size=3))
    return frozenset().union(*(t[0] for t in terms)), ",".join(t[1] for t in terms)


@st.composite
def _hashed(draw: st.DrawFn, spec: _Spec, hi: int) -> str:
    """Jenkins ``H``, ``H/n``, ``H(a-b)``, ``H(a-b)/n``: a value spread by the schedule's seed."""
    form = draw(st.sampled_from(["H", "H/n", "H(a-b)", "H(a-b)/n"]))
    text = "H"
    if form.startswith("H(a-b)"):
        a = draw(st.integers(spec.lo, hi))
        b = draw(st.integers(a, hi))
        text = f"H({a}-{b})"
    if form.endswith("/n"):
        text += f"/{draw(st.integers(1, spec.hi - spec.lo + 1))}"
    return text


def _dom_extension(max_day: int, peer_safe: bool) -> st.SearchStrategy[str]:
    if peer_safe:  # cronsim has L and LW but not nW
        return st.sampled_from(["L", "LW"])
    return st.one_of(st.just("L"), st.just("LW"), st.integers(1, max_day).map(lambda n: f"{n}W"))


def _dow_extension(spec: _Spec) -> st.SearchStrategy[str]:
    day = st.integers(spec.lo, spec.hi)
    return st.one_of(
        st.tuples(day, st.integers(1, 5)).map(lambda dn: f"{dn[0]}#{dn[1]}"),
        day.map(lambda d: f"{d}L"),
    )


@st.composite
def _plain(draw: st.DrawFn, names: bool, peer_safe: bool, star_steps_in_days: bool) -> tuple[list[str], int]:
    """The five classic fields, and the longest month the month field allows."""
    months, month_text = draw(_field(_MONTH, names=names, peer_safe=peer_safe))
    max_day = max(_MONTH_DAYS[m - 1] for m in months)
    return [
        draw(_field(_MINUTE, names=False, peer_safe=peer_safe))[1],
        draw(_field(_HOUR, names=False, peer_safe=peer_safe))[1],
        draw(_field(_Spec(1, 31), hi=max_day, names=False, peer_safe=peer_safe, star_steps=star_steps_in_days))[1],
        month_text,
        draw(_field(_dow(peer_safe), names=names, peer_safe=peer_safe, star_steps=star_steps_in_days))[1],
    ], max_day


@st.composite
def _extended(draw: st.DrawFn, names: bool, peer_safe: bool, hashes: bool) -> str:
    fields, max_day = draw(_plain(names, peer_safe, True))
    dow = _dow(peer_safe)
    if hashes:
        for index, (spec, hi) in enumerate([(_MINUTE, 59), (_HOUR, 23), (_Spec(1, 31), min(max_day, 28))]):
            if draw(st.integers(0, 3)) == 0:
                fields[index] = draw(_hashed(spec, hi))
        if draw(st.integers(0, 3)) == 0:
            fields[4] = draw(_hashed(_Spec(0, 6), 6))
    if draw(st.booleans()):
        extra = draw(st.lists(_dom_extension(max_day, peer_safe), min_size=1, max_size=2))
        fields[2] = ",".join(extra if fields[2].startswith(("*", "H")) else [fields[2], *extra])
    if draw(st.booleans()):
        extra = draw(st.lists(_dow_extension(dow), min_size=1, max_size=2))
        fields[4] = ",".join(extra if fields[4].startswith(("*", "H")) else [fields[4], *extra])
    has_ext = [any(c in f for c in "LW#") for f in (fields[2], fields[4])]
    # A star in one day field makes Vixie cron AND the two; with an extension in the other
    # that intersection can be empty, so the star-step becomes a plain star.
    for mine, other in ((2, 4), (4, 2)):
        if has_ext[(other - 2) // 2] and fields[mine].startswith("*/"):
            fields[mine] = "*"
    for index in (2, 4):
        if not peer_safe and fields[index] == "*" and draw(st.integers(0, 3)) == 0:
            fields[index] = "?"
    return " ".join(fields)


def cron_expressions(
    extensions: bool = False,
    *,
    names: bool = True,
    peer_safe: bool = False,
    hashes: bool | None = None,
    macros: bool | None = None,
    star_steps_in_days: bool = True,
) -> st.SearchStrategy[str]:
    """Valid cron expressions that :class:`~rustybackup.CronSchedule` parses.

    Without ``extensions``: classic 5-field Vixie cron (``*``, ``a``, ``a-b``, lists, ``*/n``,
    ``a-b/n``, ``a/n``, and month/day names in any case when ``names``). With
    ``extensions=True`` also ``?``, ``L``, ``LW``, ``nW``, ``d#n``, ``dL``, Jenkins ``H`` forms
    and the ``@`` macros (switch the last two off with ``hashes=False`` / ``macros=False``).
    An expression with ``H`` means a different schedule per seed; pair it with a seed (see
    :func:`schedules`).

    ``peer_safe=True`` leaves out what croniter and cronsim read differently from Vixie
    cron and from each other, so the result can be checked against them: one-value
    ranges (croniter reads day-of-week ``0-0`` as every day, cronsim reads ``5-5/2`` as
    ``5/2``), ``a/n``, day-of-week 7, ``?`` and ``nW`` (cronsim refuses them), ``H`` and macros. ``star_steps_in_days=False``
    leaves out ``*/n`` in the two day fields (croniter counts ``*/2`` as a restriction for
    the day rule; Vixie cron does not).

    Example::

        from hypothesis import given
        from rustybackup import CronSchedule
        from rustybackup.testing import cron_expressions

        @given(cron_expressions(extensions=True))
        def test_my_job_table_accepts_any_cron(expr: str) -> None:
            assert CronSchedule(expr, seed="job-1").next_after(NOW) > NOW
    """
    with_hashes = extensions and not peer_safe if hashes is None else hashes
    with_macros = extensions and not peer_safe if macros is None else macros
    if not extensions:
        plain = _plain(names, peer_safe, star_steps_in_days).map(lambda fm: " ".join(fm[0]))
    else:
        plain = _extended(names, peer_safe, with_hashes)
        if not star_steps_in_days:
            plain = plain.filter(lambda e: not any(f.startswith("*/") for f in e.split()[2::2]))
    if with_macros:
        return st.one_of(plain, plain, plain, st.sampled_from(MACROS))
    return plain


def schedules(
    tz: str | tzinfo | Sequence[str | tzinfo] | st.SearchStrategy[str | tzinfo] | None = None,
    *,
    extensions: bool = False,
    seeds: st.SearchStrategy[str | None] | None = None,
) -> st.SearchStrategy[CronSchedule]:
    """:class:`~rustybackup.CronSchedule` objects over :func:`cron_expressions`.

    ``tz`` is one zone, a list of zones to draw from, or a strategy of zones; by default
    ``"UTC"`` or one of :data:`DST_ZONES`. ``seeds`` feeds ``H`` (default: ``None`` or a short
    job-id-like text).

    Example::

        @given(schedules(tz="Europe/Berlin", extensions=True))
        def test_runs_are_strictly_increasing(s: CronSchedule) -> None:
            runs = s.next_n(NOW, 5)
            assert runs == sorted(set(runs))
    """
    zones: st.SearchStrategy[str | tzinfo]
    if tz is None:
        zones = st.sampled_from(("UTC", *DST_ZONES))
    elif isinstance(tz, st.SearchStrategy):
        zones = tz
    elif isinstance(tz, str | tzinfo):
        zones = st.just(tz)
    else:
        zones = st.sampled_from(list(tz))
    seed_strategy = seeds if seeds is not None else st.one_of(st.none(), st.text("abcdefghij-0123456789", max_size=8))
    return st.builds(CronSchedule, cron_expressions(extensions), zones, seed_strategy)
