"""The public hypothesis strategies (rustybackup.testing) yield valid, varied objects."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import CronSchedule
from rustybackup.retention import RetentionPolicy
from rustybackup.testing import (
    DST_ZONES,
    MACROS,
    cron_expressions,
    retention_policies,
    schedules,
    windows,
)
from rustybackup.windows import BackupWindow

UTC = UTC
NOW = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


T = TypeVar("T")


def draw_many(strategy: st.SearchStrategy[T], n: int = 300) -> list[T]:
    """n examples through hypothesis itself (not .example(), which warns and is not for tests)."""
    seen: list[T] = []

    @settings(max_examples=n, database=None)
    @given(strategy)
    def collect(value: T) -> None:
        seen.append(value)

    collect()
    return seen


@given(cron_expressions())
def test_classic_expressions_parse_and_fire(expr: str) -> None:
    s = CronSchedule(expr)
    assert s.next_after(NOW) > NOW
    assert len(expr.split()) == 5


@given(cron_expressions(extensions=True), st.text(max_size=6))
def test_extended_expressions_parse_and_fire_with_any_seed(expr: str, seed: str) -> None:
    s = CronSchedule(expr, "Europe/Berlin", seed=seed)
    nxt = s.next_after(NOW)
    assert nxt > NOW and s.matches(nxt)
    assert s.prev_before(NOW) < NOW


@given(cron_expressions(peer_safe=True, star_steps_in_days=False))
def test_peer_safe_expressions_avoid_the_peer_quirks(expr: str) -> None:
    fields = expr.split()
    for field in fields:
        for term in field.split(","):
            base = term.split("/")[0]
            if "-" in base:
                lo, hi = base.split("-")
                assert lo.lower() != hi.lower(), f"one-value range {term!r} in {expr!r}"
            if "/" in term:
                assert base == "*" or "-" in base, f"a/n term {term!r} in {expr!r}"
    assert not fields[2].startswith("*/") and not fields[4].startswith("*/")
    assert "7" not in fields[4].replace("/", " /").split("/")[0].replace("-", " ").replace(",", " ").split()


def test_classic_expressions_cover_every_syntax_form() -> None:
    exprs = [str(e) for e in draw_many(cron_expressions(), 400)]
    terms = [t for e in exprs for f in e.split() for t in f.split(",")]
    forms = {
        "star": any(t == "*" for t in terms),
        "star step": any(t.startswith("*/") for t in terms),
        "range": any("-" in t and "/" not in t for t in terms),
        "range step": any("-" in t and "/" in t for t in terms),
        "start step": any("/" in t and not t.startswith("*") and "-" not in t for t in terms),
        "list": any("," in f for e in exprs for f in e.split()),
        "name": any(t[:1].isalpha() for t in terms),
    }
    assert all(forms.values()), forms
    assert len(set(exprs)) > 300


def test_extended_expressions_cover_every_extension() -> None:
    exprs = [str(e) for e in draw_many(cron_expressions(extensions=True), 600)]
    text = " ".join(exprs)
    fields = [e.split() for e in exprs if not e.startswith("@")]
    dom_terms = [t for f in fields for t in f[2].split(",")]
    dow_terms = [t for f in fields for t in f[4].split(",")]
    found = {
        "?": "?" in text,
        "L": "L" in dom_terms,
        "LW": "LW" in dom_terms,
        "nW": any(t[:-1].isdigit() and t.endswith("W") for t in dom_terms),
        "#": any("#" in t for t in dow_terms),
        "dL": any(t[:-1].isdigit() and t.endswith("L") for t in dow_terms),
        "H": "H" in text,
        "macro": any(e in MACROS for e in exprs),
    }
    assert all(found.values()), found


def test_hashed_expressions_spread_by_seed() -> None:
    # The point of H: the same expression lands at different minutes for different jobs.
    spread = {str(CronSchedule("H H * * *", seed=f"job-{i}")) for i in range(50)}
    assert len(spread) > 20


@given(schedules())
def test_schedules_are_valid_and_searchable(s: CronSchedule) -> None:
    nxt = s.next_after(NOW)
    assert nxt.astimezone(UTC) > NOW and s.matches(nxt)
    assert CronSchedule(str(s), s.tz, s.seed) == s


def test_schedules_span_utc_and_dst_zones() -> None:
    zones = Counter(str(s.tz) for s in draw_many(schedules(), 300))
    assert set(zones) == {"UTC", *DST_ZONES}


@given(schedules(tz="America/New_York", extensions=True))
def test_schedules_take_one_zone(s: CronSchedule) -> None:
    assert s.tz == ZoneInfo("America/New_York")


@given(schedules(tz=[ZoneInfo("Australia/Lord_Howe"), "UTC"]))
def test_schedules_take_a_list_of_zones_including_tzinfo(s: CronSchedule) -> None:
    assert str(s.tz) in {"Australia/Lord_Howe", "UTC"}


@given(retention_policies())
def test_retention_policies_are_valid_and_round_trip(policy: RetentionPolicy) -> None:
    assert isinstance(policy, RetentionPolicy)
    assert policy.describe()
    assert RetentionPolicy.from_dict(policy.to_dict()) == policy


def test_retention_policies_cover_every_rule_and_combinations() -> None:
    policies = [p for p in draw_many(retention_policies(), 300) if isinstance(p, RetentionPolicy)]
    assert any(p.full_copies is not None and p.window is None and not any(p.counts().values()) for p in policies)
    assert any(p.window is not None and p.full_copies is None for p in policies)
    assert any(p.full_copies is None and p.window is None for p in policies)
    rules_per_policy = [
        (p.full_copies is not None) + (p.window is not None) + bool(any(p.counts().values())) for p in policies
    ]
    assert max(rules_per_policy) >= 2  # unions of different rule kinds
    for period in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        assert any(p.counts()[period] for p in policies), period


@given(retention_policies(max_redundancy=2, max_window=timedelta(hours=1), max_count=3, combinations=False))
def test_retention_policies_respect_their_bounds(policy: RetentionPolicy) -> None:
    assert policy.full_copies is None or policy.full_copies <= 2
    assert policy.window is None or policy.window <= timedelta(hours=1)
    assert max(policy.counts().values()) <= 3
    kinds = (policy.full_copies is not None) + (policy.window is not None) + bool(any(policy.counts().values()))
    assert kinds == 1


def test_retention_policies_refuse_impossible_bounds() -> None:
    with pytest.raises(ValueError, match="max_redundancy and max_count must be >= 1"):
        retention_policies(max_count=0)


@given(st.data())
def test_windows_are_valid_backup_windows(data: st.DataObject) -> None:
    w = data.draw(windows())
    assert isinstance(w, BackupWindow)
    opens = w.next_open(NOW)
    assert w.is_active(opens)
    closes = w.closes_at(opens)
    assert closes is not None and closes > opens


def test_windows_vary_in_days_zones_and_midnight_crossing() -> None:
    ws = draw_many(windows(), 300)
    starts_ends = [(w.start, w.end) for w in ws]
    assert any(e < s for s, e in starts_ends) and any(e > s for s, e in starts_ends)
    assert len({str(w.tz) for w in ws}) > 2


def test_windows_never_cross_midnight_when_asked() -> None:
    for w in draw_many(windows(crossing_midnight=False), 100):
        assert w.start < w.end


def test_importing_without_hypothesis_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n    import rustybackup.testing\n"
        "except ImportError as exc:\n    print(exc)\nelse:\n    print('imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'rustybackup[hypothesis]'" in out


def test_the_hypothesis_extra_is_declared() -> None:

    meta = importlib.metadata.metadata("rustybackup")
    assert "hypothesis" in (meta.get_all("Provides-Extra") or [])
    requirements = [r.replace('"', "'").replace(" ", "") for r in meta.get_all("Requires-Dist") or []]
    assert "hypothesis>=6.100;extra=='hypothesis'" in requirements
