"""The current time, in one place, so tests can move it (a buyer turns 沉睡 on day 91 without waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    return datetime.now(UTC) + _offset


def travel(to: datetime) -> None:
    """Make `now()` read `to` (then keep ticking). For in-process tests only."""
    global _offset
    _offset = to - datetime.now(UTC)


def reset() -> None:
    global _offset
    _offset = timedelta(0)
