"""The vectorised pieces of import cleaning that are easy to get subtly wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa

from laoke.kit import clock
from services.ingest.imports.normalise import _amount, _Errors, _json_object, _mobile, _time


def test_json_is_escaped_and_null_fields_are_left_out() -> None:
    names = pa.array(['李"雷"', "a\\b", None, None])
    notes = pa.array(["第一行\n第二行", None, "x", None])
    objects = _json_object({"name": names, "note": notes}).to_pylist()
    assert [json.loads(o) if o else o for o in objects] == [
        {"name": '李"雷"', "note": "第一行 第二行"},
        {"name": "a\\b"},
        {"note": "x"},
        None,
    ]


def test_mobiles_are_normalised_and_masked_ones_dropped() -> None:
    raw = pa.array(
        ["13800138000", "+86 139-0013-9000", "008613700137000", "138****8000", "0571-88888888", None]
    )
    assert _mobile(raw).to_pylist() == ["13800138000", "13900139000", "13700137000", None, None, None]


def test_json_objects_are_the_same_whether_or_not_a_column_needs_escaping() -> None:
    plain = pa.array(["浙江省", None, "上海市"])
    # A slice whose neighbour needs escaping: the column's bytes say "maybe", the rows say no.
    sliced = pa.array(['他说"好"', "杭州市", None, "浦东新区"]).slice(1)
    objects = _json_object({"province": plain, "city": sliced}).to_pylist()
    assert [json.loads(o) if o else o for o in objects] == [
        {"province": "浙江省", "city": "杭州市"},
        None,
        {"province": "上海市", "city": "浦东新区"},
    ]
    assert _json_object({"a": pa.nulls(2, pa.string())}).to_pylist() == [None, None]


def test_amounts_are_read_with_and_without_currency_marks() -> None:
    errors = _Errors(5)
    fen = _amount(pa.array(["1,299.50元", "¥12.5", "￥ 3", "-1.00", "abc"]), "实付", errors, required=True)
    assert fen.to_pylist()[:3] == [129950, 1250, 300]
    assert errors.message.to_pylist() == [
        None,
        None,
        None,
        "实付: negative amount",
        "实付: not an amount: abc",
    ]
    plain = _amount(pa.array(["314.52", None]), "实付", _Errors(2), required=False)
    assert plain.to_pylist() == [31452, None]


def test_times_more_than_a_day_ahead_are_row_errors() -> None:
    errors = _Errors(3)
    soon = (clock.now() + timedelta(hours=12)).astimezone(ZoneInfo("Asia/Shanghai"))
    seconds = _time(
        pa.array(["2025-03-01 09:30:00", soon.strftime("%Y-%m-%d %H:%M:%S"), "2062-03-01 09:30:00"]),
        "订单创建时间",
        errors,
        "Asia/Shanghai",
        required=True,
    )
    assert seconds.to_pylist()[0] == int(datetime(2025, 3, 1, 1, 30, tzinfo=UTC).timestamp())
    # Half a day ahead passes (a shop clock or zone a little off); a mistyped year does not.
    assert errors.message.to_pylist() == [
        None,
        None,
        "订单创建时间: more than a day in the future: 2062-03-01 09:30:00",
    ]
