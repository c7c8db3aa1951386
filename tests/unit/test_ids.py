"""Public ids: a type prefix and 16 hex digits; shop ids sort by when the shop was made. Time cursors."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from laoke.kit import clock
from laoke.kit.errors import BadRequest
from laoke.kit.ids import encode_cursor, new_id, new_time_ordered_id, read_time_cursor, time_cursor


def test_ids_have_a_prefix_and_sixteen_hex_digits() -> None:
    for made in (new_id("cus"), new_time_ordered_id("shp")):
        assert re.fullmatch(r"[a-z]{3}_[0-9a-f]{16}", made), made
    assert len({new_time_ordered_id("shp") for _ in range(1000)}) == 1000


def test_time_ordered_ids_made_later_sort_after_earlier_ones() -> None:
    made = []
    try:
        for year in (2026, 2027, 2031, 2099):
            clock.travel(datetime(year, 1, 1, tzinfo=UTC))
            made += [new_time_ordered_id("shp") for _ in range(50)]
    finally:
        clock.reset()
    # Within a second the order is random; across seconds it follows the clock.
    assert [m[4:12] for m in made] == sorted(m[4:12] for m in made)
    assert made[-1] > made[0] and made[50] > made[49]


def test_time_cursors_round_trip_and_anything_else_is_a_400() -> None:
    at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    assert read_time_cursor(time_cursor(at, "rdm_1")) == (at, "rdm_1")
    naive = encode_cursor("2026-11-20T09:30:00", "rdm_1")
    for bad in (
        "nope",
        "",
        encode_cursor("yesterday", "x"),
        naive,
        encode_cursor("2026-11-20T09:30:00+00:00"),
    ):
        with pytest.raises(BadRequest):
            read_time_cursor(bad)
