"""Strategies for :class:`~rustybackup.retention.RetentionPolicy`."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import strategies as st

from ..retention import RetentionPolicy

__all__ = ["retention_policies"]

_PERIODS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


@st.composite
def _keep(draw: st.DrawFn, max_count: int) -> RetentionPolicy:
    # One period is forced to at least 1: a policy that keeps nothing is refused (and would
    # delete every backup, which no user means). The others are often 0, as in real configs.
    counts = {p: draw(st.sampled_from([0, 0]) | st.integers(0, max_count)) for p in _PERIODS}
    required = draw(st.sampled_from(_PERIODS))
    counts[required] = max(counts[required], draw(st.integers(1, max_count)))
    return RetentionPolicy.keep(**counts)


def retention_policies(
    *,
    max_redundancy: int = 5,
    max_window: timedelta = timedelta(days=60),
    max_count: int = 10,
    combinations: bool = True,
) -> st.SearchStrategy[RetentionPolicy]:
    """Valid retention policies: RMAN-style ``redundancy(n)`` and ``recovery_window(w)``,
    restic-style ``keep(last=, hourly=, ..., yearly=)``, and (with ``combinations``) unions
    of two or three of them built with ``|`` (a set is kept if any rule keeps it).

    Windows are whole minutes from one minute to ``max_window``.

    Example::

        @given(retention_policies())
        def test_newest_full_always_survives(policy: RetentionPolicy) -> None:
            plan = catalog.retention_plan("db", policy, now=NOW)
            assert any(d.keep for d in plan if d.set_id == newest_full)
    """
    if max_redundancy < 1 or max_count < 1 or max_window < timedelta(minutes=1):
        raise ValueError("retention_policies: max_redundancy and max_count must be >= 1, max_window >= 1 minute")
    minutes = int(max_window / timedelta(minutes=1))
    single = st.one_of(
        st.integers(1, max_redundancy).map(RetentionPolicy.redundancy),
        st.integers(1, minutes).map(lambda m: RetentionPolicy.recovery_window(timedelta(minutes=m))),
        _keep(max_count),
    )
    if not combinations:
        return single
    combined = st.lists(single, min_size=2, max_size=3).map(lambda ps: RetentionPolicy.combine(*ps))
    return st.one_of(single, single, combined)
