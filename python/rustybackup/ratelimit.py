"""IO rate limits for backups of local sources: ``--io-limit 50MiB/s``.

The Rust engine reads in 4 MiB chunks and calls back into Python (progress and
cancellation) at most every 8 MiB; the callback runs on the reading thread, so holding it
back holds the reads back. :func:`paced` wraps a backup's progress callback with a
:class:`TokenBucket`: after each report the bucket is charged with the bytes read since
the last one, and when it is in debt the reader waits until the debt is paid. The average
rate over any span longer than ``burst / rate`` stays at or under the limit; a single
burst is at most one report's worth (8 MiB) above the bucket's size.

The bucket takes its clock and its sleep as arguments, so its arithmetic is tested with a
fake clock instead of timing real reads.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from .errors import ConfigError

__all__ = ["DEFAULT_BURST", "TokenBucket", "format_rate", "paced", "parse_rate"]

#: The bucket holds at most this many bytes: two engine reports, so pacing never has to
#: split the engine's natural 8 MiB steps.
DEFAULT_BURST = 16 << 20

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*(?:/\s*s)?\s*$")
_MIN_RATE = 1024  # below 1 KiB/s a backup would never finish; a typo is likelier


def parse_rate(text: str, what: str = "io_limit") -> float:
    """Bytes per second from ``"50MiB/s"``, ``"800KB/s"``, ``"1GiB"`` or a plain number."""
    m = _RATE_RE.match(text) if isinstance(text, str) else None
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ConfigError(f"{what}: {text!r} is not a rate such as 50MiB/s, 800KB/s or 1GiB/s")
    rate = float(m.group(1)) * _UNITS[unit]
    if rate < _MIN_RATE:
        raise ConfigError(f"{what}: {text!r} is below the smallest limit, 1KiB/s")
    return rate


def format_rate(rate: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if rate >= size:
            value = rate / size
            return f"{value:g}{unit}/s" if value == int(value) else f"{value:.2f}{unit}/s"
    return f"{rate:g}B/s"


class TokenBucket:
    """A token bucket in bytes: ``rate`` per second, holding at most ``burst``.

    :meth:`charge` takes bytes already read and returns how long to wait before reading
    more (0.0 when the bucket covered them); the debt is carried, never forgiven.
    """

    def __init__(
        self,
        rate: float,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not rate > 0:
            raise ConfigError(f"io_limit: the rate must be positive, got {rate!r}")
        if not burst > 0:
            raise ConfigError(f"io_limit: the burst must be positive, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        # Looked up per bucket, not bound at import, so a test can stand in for the clock.
        self._clock = clock or time.monotonic
        self._tokens = self.burst
        self._at = self._clock()

    def charge(self, nbytes: int) -> float:
        """Takes ``nbytes`` from the bucket; the seconds to wait before the next read."""
        if nbytes < 0:
            raise ValueError(f"cannot charge {nbytes} bytes")
        now = self._clock()
        # A clock that goes backwards (it should not: monotonic) refills nothing.
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class _Waitable(Protocol):
    def is_set(self) -> bool: ...


def paced(
    progress: Callable[[Any], object] | None,
    bucket: TokenBucket,
    cancel: _Waitable | None = None,
    sleep: Callable[[float], object] | None = None,
) -> Callable[[Any], object]:
    """A progress callback that first charges ``bucket`` and waits, then calls ``progress``.

    It reads ``bytes_done`` of each report; a report smaller than the previous one is a
    new pass over the files (the engine restarts a pass without a vanished file) and
    counts from zero. The wait ends early when ``cancel`` is set, if ``cancel`` can
    ``wait(timeout)`` (a ``threading.Event``), so a paced backup stays cancellable.
    """
    last = 0
    if sleep is None:
        waiter = getattr(cancel, "wait", None)
        sleep = waiter if callable(waiter) else time.sleep

    def report(p: Any) -> None:
        nonlocal last
        done = int(p.bytes_done)
        delta = done - last if done >= last else done
        last = done
        delay = bucket.charge(delta)
        if delay > 0 and not (cancel is not None and cancel.is_set()):
            assert sleep is not None
            sleep(delay)
        if progress is not None:
            progress(p)

    return report
