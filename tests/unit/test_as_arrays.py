"""Rows turned into one list per column for `unnest` statements."""

from __future__ import annotations

import pytest

from laoke.kit.db import as_arrays


def test_rows_become_columns_in_order_with_nulls_kept() -> None:
    rows = [("cus_1", "李四", None), ("cus_2", None, 3)]
    assert as_arrays(("customer_id", "name", "points"), rows) == {
        "customer_id": ["cus_1", "cus_2"],
        "name": ["李四", None],
        "points": [None, 3],
    }


def test_no_rows_give_empty_columns() -> None:
    assert as_arrays(("a", "b"), []) == {"a": [], "b": []}


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError):
        as_arrays(("a", "b"), [("x",)])
