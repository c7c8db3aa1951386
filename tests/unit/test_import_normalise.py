"""The vectorised pieces of import cleaning that are easy to get subtly wrong."""

from __future__ import annotations

import json

import pyarrow as pa

from services.ingest.imports.normalise import _json_object, _json_string, _mobile


def test_json_is_escaped_and_null_fields_are_left_out() -> None:
    names = pa.array(['李"雷"', "a\\b", None, None])
    notes = pa.array(["第一行\n第二行", None, "x", None])
    objects = _json_object({"name": _json_string(names), "note": _json_string(notes)}, 4).to_pylist()
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
