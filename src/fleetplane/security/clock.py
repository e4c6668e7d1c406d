"""One definition of "now" and of how datetimes are normalised.

Every time-dependent function of the engine takes an optional ``now`` so
tests pass explicit instants instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime.

    Naive datetimes are taken to be UTC, not local time: SQLite drops the
    offset of stored timestamps, and every timestamp this engine writes is
    UTC, so a naive value read back from a store is UTC.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def resolve_now(now: datetime | None) -> datetime:
    """The given instant in UTC, or the current time when none is given."""
    return datetime.now(UTC) if now is None else as_utc(now)
