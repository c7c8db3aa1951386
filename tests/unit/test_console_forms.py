"""How the console reads what a shop owner types and writes the sums it shows."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from gateway.console.base import optional_number, typed_list, whole_number, yuan
from gateway.console.campaigns import shop_time
from gateway.console.customers import rfm_bands
from gateway.console.loyalty import coupon_terms


def test_whole_numbers_as_typed_on_a_chinese_keyboard() -> None:
    assert [whole_number(x) for x in ("0", "+200", "＋200", "－50", " 1 000 ")] == [0, 200, 200, -50, 1000]
    # Not a whole number: handed on as typed, for the API to refuse by the field's name (never a 500).
    assert [whole_number(x) for x in ("²", "两百", "1.5", "", "9" * 13)] == ["²", "两百", "1.5", "", "9" * 13]
    # A box that may stay empty (no limit): empty is None, a typed 0 stays 0.
    assert [optional_number(x) for x in ("", "  ", "0", "-3", "x")] == [None, None, 0, -3, "x"]


def test_sums_are_grouped_by_thousands() -> None:
    assert [yuan(v) for v in ("17682143.26", "0.5", "120", "-3000")] == [
        "17,682,143.26",
        "0.50",
        "120.00",
        "-3,000.00",
    ]
    assert yuan("n/a") == "n/a"


def test_a_browsers_local_time_is_read_on_the_shops_clock() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert shop_time("2026-11-11T20:00", shanghai) == "2026-11-11T20:00:00+08:00"
    assert shop_time("2026-11-11T20:00:00+00:00", shanghai) == "2026-11-11T20:00:00+00:00"
    assert shop_time("", shanghai) is None
    assert shop_time("明天", shanghai) == "明天"


def test_rfm_scores_are_told_by_the_shops_thresholds() -> None:
    recency, frequency = rfm_bands({"recency_days": [30, 60, 90, 180], "frequency": [2, 3, 5, 8]}, str)
    assert [recency[r] for r in (5, 4, 3, 2, 1)] == [
        "≤30 days",
        "31–60 days",
        "61–90 days",
        "91–180 days",
        ">180 days",
    ]
    assert [frequency[f] for f in (1, 2, 3, 4, 5)] == [
        "<2 orders",
        "2 orders",
        "3–4 orders",
        "5–7 orders",
        "≥8 orders",
    ]


def test_lists_typed_in_one_box_split_on_any_comma() -> None:
    assert typed_list("包邮，生日双倍积分、 专属客服, VIP ,,") == ["包邮", "生日双倍积分", "专属客服", "VIP"]
    assert typed_list(" ， ") == []


def test_coupon_terms_read_as_a_shop_owner_writes_them() -> None:
    spend_save = {"kind": "spend_save", "threshold": "200.00", "amount": "20.00"}
    no_threshold = {"kind": "no_threshold", "amount": "10.50"}
    percent_off = {"kind": "percent_off", "percent_off": 15}
    assert [coupon_terms(c, "zh") for c in (spend_save, no_threshold, percent_off)] == [
        "满200减20",
        "无门槛减10.5",
        "8.5折",
    ]
    assert [coupon_terms(c, "en") for c in (spend_save, no_threshold, percent_off)] == [
        "20 off orders of 200+",
        "10.5 off",
        "15% off",
    ]
