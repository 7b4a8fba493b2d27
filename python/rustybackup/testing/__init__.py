"""Hypothesis strategies for users' own property-based suites.

Install with ``pip install 'rustybackup[hypothesis]'`` and import what you need::

    from hypothesis import given
    from rustybackup.testing import cron_expressions, retention_policies, schedules, windows

    @given(schedules(tz="Europe/Berlin"))
    def test_my_planner_never_schedules_twice_in_one_minute(s): ...

Every strategy yields only valid objects (the constructors accept them), spread over the
syntax and the semantics that matter: DST zones, the cron day rule, retention rule mixes.

- :func:`cron_expressions`: cron text, classic or with the Quartz/cronie/Jenkins extensions.
- :func:`schedules`: :class:`~rustybackup.CronSchedule` objects in UTC and in DST zones.
- :func:`retention_policies`: :class:`~rustybackup.retention.RetentionPolicy` objects.
- :func:`windows`: :class:`~rustybackup.windows.BackupWindow` objects.
"""

from __future__ import annotations

try:
    import hypothesis as _hypothesis  # noqa: F401  (only probing that it is installed)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "rustybackup.testing needs hypothesis; install it with: pip install 'rustybackup[hypothesis]'"
    ) from exc

from .cron import DST_ZONES as DST_ZONES
from .cron import MACROS as MACROS
from .cron import cron_expressions as cron_expressions
from .cron import schedules as schedules
from .retention import retention_policies as retention_policies
from .windows import windows as windows

__all__ = ["DST_ZONES", "MACROS", "cron_expressions", "retention_policies", "schedules", "windows"]
