"""The current time, in one place, so tests can move it (a buyer turns 沉睡 on day 91 without waiting)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, time, timedelta
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, WithJsonSchema

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


@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def zone_name(value: str) -> str:
    """An IANA time zone name (`Asia/Shanghai`), or ValueError. Checked against the zone database's list,
    not just by loading it: `ZoneInfo` also opens paths such as `posix/Asia/Shanghai`."""
    if value not in _zone_names():
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)")
    return value


# A shop's business-day zone in any request model.
TimeZoneName = Annotated[str, AfterValidator(zone_name)]


def _without_offset(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("give the shop's local time of day without an offset, e.g. 21:00")
    return value


# A time of day on a shop's clock (quiet hours, activity slots): "21:00" or "21:00:00", no offset. The
# schema says so with a pattern: JSON Schema's `format: time` means RFC 3339, which requires an offset.
LocalTime = Annotated[
    time,
    AfterValidator(_without_offset),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$",
            "examples": ["21:00"],
        }
    ),
]
