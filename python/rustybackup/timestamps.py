"""Instants as the catalog stores them: whole microseconds since the Unix epoch, UTC.
Exact (no float rounding) and sortable as integers. One pair of conversions for the
whole package."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .errors import CatalogError, ConfigError

__all__ = ["EPOCH", "to_us", "from_us"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# datetime's own range, years 1 to 9999, in microseconds from the epoch.
_MIN_US = (datetime.min.replace(tzinfo=UTC) - EPOCH) // _US
_MAX_US = (datetime.max.replace(tzinfo=UTC) - EPOCH) // _US


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(f"datetime {moment.isoformat()} has no time zone; pass an aware datetime")
    return (moment - EPOCH) // _US


def from_us(us: object, what: str = "timestamp") -> datetime:
    """The aware UTC datetime of a stored microsecond timestamp. A value that is not an
    integer in datetime's range (damage, or a row written by something else) is a
    CatalogError that starts with ``what`` (the file, row and field)."""
    if type(us) is not int or not _MIN_US <= us <= _MAX_US:
        shown = f"an integer of {us.bit_length()} bits" if isinstance(us, int) and us.bit_length() > 64 else repr(us)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise CatalogError(f"{what}: {shown} is not a time in microseconds since the epoch (years 1-9999)")
    return EPOCH + timedelta(microseconds=us)
