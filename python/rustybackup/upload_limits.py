"""Upload bandwidth by time of day: ``50MiB/s@22:00-06:00``, ``5MiB/s@09:00-18:00``.

A schedule is a list of (rate, daily window) rules in one time zone; at any instant the
first rule whose window holds it gives the upload rate, and outside every window the
`default` applies (None: unlimited). A window whose end is not after its start wraps
past midnight (22:00-06:00). An upload that runs across a boundary changes pace there:
`UploadPacer` re-applies the rate through the storage layer's limiter while it runs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, tzinfo

from .errors import ConfigError
from .ratelimit import format_rate, parse_rate
from .windows import load_zone

log = logging.getLogger(__name__)

_RULE = re.compile(r"^\s*([^@\s]+)\s*@\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# How often a running upload looks at the clock for a window boundary.
RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class UploadRule:
    """`rate` bytes per second from `start` to `end` (wall clock, every day)."""

    rate: float
    start: time
    end: time

    def holds(self, wall: time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end  # wraps past midnight (or all day)

    def __str__(self) -> str:
        return f"{format_rate(self.rate)}@{self.start:%H:%M}-{self.end:%H:%M}"


def parse_rule(text: str, position: int = 0) -> UploadRule:
    """``RATE@HH:MM-HH:MM``; ConfigError names the rule (its position) and the part."""
    where = f"upload limit #{position + 1} {text!r}"
    m = _RULE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(f"{where}: expected RATE@HH:MM-HH:MM, e.g. 50MiB/s@22:00-06:00")
    rate = parse_rate(m.group(1), what=where)
    h1, m1, h2, m2 = (int(g) for g in m.groups()[1:])
    for name, h, mi in (("start", h1, m1), ("end", h2, m2)):
        if not (0 <= h <= 23 and 0 <= mi <= 59):
            raise ConfigError(f"{where}: {name} {h:02d}:{mi:02d} is not a time of day (00:00-23:59)")
    return UploadRule(rate, time(h1, m1), time(h2, m2))


@dataclass(frozen=True)
class UploadSchedule:
    """Rules in `tz`, first match wins; `default` outside them (None: unlimited)."""

    rules: tuple[UploadRule, ...] = ()
    tz: str = "UTC"
    default: float | None = None
    _zone: tzinfo = field(default=UTC, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", load_zone(self.tz, "upload limit tz"))

    @classmethod
    def parse(cls, specs: Sequence[str], tz: str = "UTC", default: str | None = None) -> UploadSchedule:
        rules = tuple(parse_rule(s, i) for i, s in enumerate(specs))
        return cls(rules, tz, None if default is None else parse_rate(default, "default upload limit"))

    def rate_at(self, when: datetime) -> float | None:
        """The upload rate in force at `when` (aware), None for unlimited."""
        if when.tzinfo is None:
            raise ConfigError("upload limits need timezone-aware times")
        wall = when.astimezone(self._zone).time()
        for rule in self.rules:
            if rule.holds(wall):
                return rule.rate
        return self.default

    def __str__(self) -> str:
        return ", ".join(map(str, self.rules)) + f" ({self.tz})"


class UploadPacer:
    """Keeps a storage limiter at the schedule's rate while uploads run."""

    def __init__(
        self, schedule: UploadSchedule, apply: Callable[[float | None], object], clock: Callable[[], datetime]
    ) -> None:
        self.schedule = schedule
        self.apply = apply
        self.clock = clock
        self.current: float | None = None

    def tick(self) -> float | None:
        rate = self.schedule.rate_at(self.clock())
        if rate != self.current:
            log.info("upload limit now %s", "unlimited" if rate is None else format_rate(rate))
            self.apply(rate)
            self.current = rate
        return rate

    @contextmanager
    def running(self, every: float = RECHECK_SECONDS) -> Iterator[None]:
        """Applies the rate now and re-checks it every `every` seconds until the block
        ends (a boundary crossed mid-upload changes the pace there)."""
        self.tick()
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                try:
                    self.tick()
                except Exception:  # a failing re-check must not kill an upload
                    log.exception("upload limit re-check failed")

        t = threading.Thread(target=loop, name="upload-pacer", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=every + 5)


__all__ = ["UploadPacer", "UploadRule", "UploadSchedule", "parse_rule"]
