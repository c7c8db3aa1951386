"""The current time, in one place, so tests can move it (a buyer turns 沉睡 on day 91 without waiting)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator

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
