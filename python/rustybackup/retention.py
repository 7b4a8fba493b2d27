"""Retention policies and plans: which backup sets stay, each decision with its reason.

The resolution runs in the Rust core (``_core.retention_plan``) over plain catalog rows;
this module holds the policy record, the decision record and the conversions.

A word on ``recovery_window``: it keeps every instant of the window *recoverable*. That
means the newest usable FULL finished at or before ``now - window`` (RMAN's point of
recoverability), its chain, and everything since, stay, however old that FULL is. It does
NOT mean "delete whatever is older than the window": users of RMAN, Barman and pgBackRest
lose restores to exactly that misreading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from . import _core
from ._core import ChainRows, RetentionDecision
from .durations import parse_duration
from .errors import ConfigError
from .timestamps import to_us

__all__ = ["ChainRecord", "RetentionPolicy", "RetentionDecision", "plan_retention", "parse_duration", "to_us"]

ChainRecord = tuple[str, str, "str | None", int, int, str]
"""A set as the chain rules see it: ``(id, kind, parent_id, started_us, finished_us,
status)``, the tuple ``_core``'s chain functions take (the one row type of the ``sets``
table is ``catalog.SetRow``)."""

_PERIODS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_MAX_COUNT = 2**32 - 1
_MAX_WINDOW = timedelta(microseconds=2**63 - 1)


@dataclass(frozen=True)
class RetentionPolicy:
    """A combined retention policy: a set is kept if any of its rules keeps it.

    Build it with :meth:`redundancy`, :meth:`recovery_window` or :meth:`keep`, and combine
    with ``|`` (or :meth:`combine`): the union keeps the larger count of each rule, which
    keeps exactly what either policy keeps.

    Attributes:
        full_copies: redundancy: the n newest usable FULL chains stay (RMAN REDUNDANCY).
        window: every instant in ``[now - window, now]`` stays recoverable (see the module
            docstring: this is not "delete what is older than window").
        keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly: restic/borg
            counts; 0 switches that rule off.
    """

    full_copies: int | None = None
    window: timedelta | None = None
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    def __post_init__(self) -> None:
        # The bounds are what the Rust planner takes (u32 counts, an i64 microsecond
        # window): a policy that passes here never fails later inside a backup job.
        if self.full_copies is not None:
            _check_count("redundancy", self.full_copies, 1)
        if self.window is not None and (not isinstance(self.window, timedelta) or self.window <= timedelta(0)):
            raise ConfigError(f"recovery window must be a positive timedelta, not {_short(self.window)}")
        if self.window is not None and self.window > _MAX_WINDOW:
            raise ConfigError(f"recovery window must be at most {_MAX_WINDOW.days} days, not {self.window.days} days")
        for period in _PERIODS:
            _check_count(f"keep {period}=", getattr(self, f"keep_{period}"), 0)
        if self.full_copies is None and self.window is None and not any(self.counts().values()):
            raise ConfigError("the retention policy keeps nothing: give redundancy, a recovery window or a keep count")

    @classmethod
    def redundancy(cls, n: int) -> RetentionPolicy:
        """Keep the ``n`` newest usable FULL chains, and what recovers any instant since the
        ``n``-th of them (its archive logs included)."""
        return cls(full_copies=n)

    @classmethod
    def recovery_window(cls, window: timedelta) -> RetentionPolicy:
        """Keep every instant of the last ``window`` recoverable.

        The newest usable FULL finished at or before ``now - window`` (the point of
        recoverability), its chain and everything since stay, however old that FULL is.
        This is NOT "delete whatever is older than ``window``".
        """
        return cls(window=window)

    @classmethod
    def keep(
        cls, *, last: int = 0, hourly: int = 0, daily: int = 0, weekly: int = 0, monthly: int = 0, yearly: int = 0
    ) -> RetentionPolicy:
        """restic/borg ``forget --keep-*``: the newest restore point of each of the N most
        recent hours/days/ISO weeks/months/years *that have one*, in the database's zone,
        plus the ``last`` newest points. A machine that was off for weeks keeps its history,
        because empty periods are not counted."""
        return cls(
            keep_last=last,
            keep_hourly=hourly,
            keep_daily=daily,
            keep_weekly=weekly,
            keep_monthly=monthly,
            keep_yearly=yearly,
        )

    @classmethod
    def combine(cls, *policies: RetentionPolicy) -> RetentionPolicy:
        """The union of ``policies`` (at least one)."""
        if not policies:
            raise ConfigError("combine() needs at least one policy")
        result = policies[0]
        for policy in policies[1:]:
            result = result | policy
        return result

    def __or__(self, other: RetentionPolicy) -> RetentionPolicy:
        if not isinstance(other, RetentionPolicy):
            return NotImplemented
        copies = [c for c in (self.full_copies, other.full_copies) if c is not None]
        windows = [w for w in (self.window, other.window) if w is not None]
        mine, theirs = self.counts(), other.counts()
        return RetentionPolicy(
            full_copies=max(copies) if copies else None,
            window=max(windows) if windows else None,
            **{f"keep_{p}": max(mine[p], theirs[p]) for p in _PERIODS},
        )

    def counts(self) -> dict[str, int]:
        """The keep counts by period name (``last``, ``hourly``, ... ``yearly``)."""
        return {p: int(getattr(self, f"keep_{p}")) for p in _PERIODS}

    def describe(self) -> str:
        """``"redundancy 2, 7-day recovery window, keep daily=7 weekly=4"``."""
        parts = []
        if self.full_copies is not None:
            parts.append(f"redundancy {self.full_copies}")
        if self.window is not None:
            parts.append(f"{_span(self.window)} recovery window")
        kept = " ".join(f"{p}={n}" for p, n in self.counts().items() if n)
        if kept:
            parts.append(f"keep {kept}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, int | str]:
        """A JSON-ready form (for job configuration); the window as a duration string."""
        data: dict[str, int | str] = {}
        if self.full_copies is not None:
            data["redundancy"] = self.full_copies
        if self.window is not None:
            data["window"] = f"{int(self.window.total_seconds())}s"
        data.update({p: n for p, n in self.counts().items() if n})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RetentionPolicy:
        """The inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        unknown = sorted(set(data) - {"redundancy", "window", *_PERIODS})
        if unknown:
            raise ConfigError(
                f"unknown retention setting(s) {', '.join(unknown)}; known: redundancy, window, {', '.join(_PERIODS)}"
            )
        window = data.get("window")
        raw_copies = data.get("redundancy")
        copies = None if raw_copies is None else _check_count("redundancy", raw_copies, 1)
        counts = {f"keep_{p}": _check_count(f"keep {p}=", data.get(p, 0), 0) for p in _PERIODS}
        parsed = parse_duration(window) if isinstance(window, str) else None if window is None else _bad_window(window)
        return cls(full_copies=copies, window=parsed, **counts)

    @classmethod
    def parse(cls, spec: str) -> RetentionPolicy:
        """``"redundancy=2,window=7d,daily=7,weekly=4"`` (as ``job add --retention`` takes it)."""
        data: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip().lower().removeprefix("keep_").removeprefix("keep-")
            if not sep or not value.strip():
                raise ConfigError(f"invalid retention setting {item!r} in {spec!r}: use name=value")
            if name == "window":
                data[name] = value.strip()
            elif value.strip().isascii() and value.strip().isdigit():
                if len(value.strip()) > len(str(_MAX_COUNT)):
                    raise ConfigError(f"invalid retention setting {name}: at most {_MAX_COUNT}")
                data[name] = int(value)
            else:
                raise ConfigError(f"invalid retention setting {item!r} in {spec!r}: {name} needs a whole number")
        return cls.from_dict(data)

    @property
    def window_us(self) -> int | None:
        """The window in whole microseconds, as ``_core.retention_plan`` takes it."""
        return None if self.window is None else self.window // timedelta(microseconds=1)


def _bad_window(value: object) -> timedelta:
    raise ConfigError(f"window must be a duration string such as 7d, not {_short(value)}")


def _check_count(name: str, value: object, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"{name} must be an int of at least {least}, not {_short(value)}")
    if value > _MAX_COUNT:
        raise ConfigError(f"{name} must be at most {_MAX_COUNT}, not {_short(value)}")
    return value


def _short(value: object) -> str:
    """``repr`` of a bad value, cut short: a 5,000-digit count is not echoed whole."""
    if isinstance(value, int) and value.bit_length() > 100:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for size, name in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0 and window.microseconds == 0:
            return f"{seconds // size}-{name}"
    return str(window)


class SetLike(Protocol):
    """What :func:`plan_retention` reads from a ``BackupSet``-like record."""

    @property
    def id(self) -> str: ...
    @property
    def backup_type(self) -> str: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime: ...
    @property
    def status(self) -> str: ...


def as_row(record: ChainRecord | SetLike) -> ChainRecord:
    """A catalog row for ``_core``: tuples pass through; ``BackupSet``-like objects convert."""
    if isinstance(record, tuple):
        return record
    return (
        record.id,
        str(record.backup_type),
        record.parent_id,
        to_us(record.started_at),
        to_us(record.finished_at),
        str(record.status),
    )


def plan_retention(
    records: Iterable[ChainRecord | SetLike] | ChainRows,
    policy: RetentionPolicy,
    now: datetime,
    tz: str = "UTC",
    protected: Iterable[str] = (),
    force: bool = False,
) -> list[RetentionDecision]:
    """A decision for every set of ONE database, in input order.

    Args:
        records: ``(id, kind, parent_id, started_us, finished_us, status)`` tuples,
            objects with ``id, backup_type, parent_id, started_at, finished_at, status``,
            or the ``ChainRows`` a catalog handed to Rust (``BackupCatalog.chain_rows``).
        policy: what to keep.
        now: the aware instant the recovery window ends at.
        tz: the database's zone; keep() counts its calendar periods.
        protected: ids being read by a running restore or verification; they stay.
        force: allow deleting the last usable FULL.

    Raises:
        ValueError: a naive ``now``, an unknown zone, a malformed record.
        CatalogError: two records share an id.
    """
    rows = records if isinstance(records, ChainRows) else [as_row(r) for r in records]
    return _core.retention_plan(
        rows,
        to_us(now),
        redundancy=policy.full_copies,
        window_us=policy.window_us,
        keep_last=policy.keep_last,
        keep_hourly=policy.keep_hourly,
        keep_daily=policy.keep_daily,
        keep_weekly=policy.keep_weekly,
        keep_monthly=policy.keep_monthly,
        keep_yearly=policy.keep_yearly,
        tz=tz,
        protected=list(protected),
        force=force,
    )
