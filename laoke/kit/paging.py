"""Lists read newest first a page at a time, keyed on (time, id): a page is one indexed range scan
however deep into the list it starts, where an OFFSET would read and drop every row before it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from laoke.kit.ids import read_time_cursor, time_cursor

Row = TypeVar("Row")


def newest_first(
    query: Select[Any],
    at: InstrumentedAttribute[Any],
    key: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
) -> Select[Any]:
    """The query from after `cursor` (400 for one this API did not give out), newest first by (at, key),
    one row more than a page: that row says whether another page follows."""
    if cursor is not None:
        query = query.where(tuple_(at, key) < tuple_(*read_time_cursor(cursor)))
    return query.order_by(at.desc(), key.desc()).limit(limit + 1)


def split_page(
    rows: Sequence[Row], limit: int, sort_key: Callable[[Row], tuple[datetime, str]]
) -> tuple[list[Row], str | None]:
    """A page of `newest_first`'s rows, and the cursor of the next page (None on the last)."""
    page = list(rows[:limit])
    return page, time_cursor(*sort_key(page[-1])) if len(rows) > limit else None
