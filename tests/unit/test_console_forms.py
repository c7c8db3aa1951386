"""How the console reads what a shop owner types and writes the sums it shows."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from gateway.console.activities import (
    FormProblem,
    activity_from_form,
    options_from,
    questions_from,
    slots_from,
    tasks_from,
)
from gateway.console.base import count, optional_number, shop_time, typed_list, whole_number, yuan
from gateway.console.customers import rfm_bands
from gateway.console.loyalty import coupon_terms, prizes_from_form, probability


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


def test_an_activity_typed_as_a_shop_owner_says_it() -> None:
    assert questions_from(
        "skin_type: 您的肤质？ = 干 / 油 ／混合\n\n* 想要的新品＝面霜/精华\n给我们的建议"
    ) == [
        {"id": "skin_type", "text": "您的肤质？", "kind": "single", "options": ["干", "油", "混合"]},
        {"id": "q2", "text": "想要的新品", "kind": "multiple", "options": ["面霜", "精华"]},
        {"id": "q3", "text": "给我们的建议", "kind": "text", "options": []},
    ]
    # A Chinese colon in the text is not a key; an `=` with nothing after is a choice with no options
    # (the API says it needs two).
    assert questions_from("注意：您的肤质 =") == [
        {"id": "q1", "text": "注意：您的肤质", "kind": "single", "options": []}
    ]
    assert options_from("green_tea: 龙井\n正山小种") == [
        {"id": "green_tea", "label": "龙井"},
        {"id": "o2", "label": "正山小种"},
    ]
    assert slots_from("9:00-9:10， 20：00 至 20:10") == [
        {"start": "09:00", "end": "09:10"},
        {"start": "20:00", "end": "20:10"},
    ]
    for typed in ("十点", "10:00-10:10, 晚上"):
        with pytest.raises(FormProblem) as problem:
            slots_from(typed)
        assert problem.value.field == "slots"
    assert tasks_from("收藏店铺\n加购 item_9\nactivity act_1\n下单") == [
        {"type": "favorite_shop"},
        {"type": "add_to_cart", "item_id": "item_9"},
        {"type": "activity", "activity_id": "act_1"},
        {"type": "order"},
    ]
    with pytest.raises(FormProblem) as problem:
        tasks_from("转发朋友圈")
    assert (problem.value.field, problem.value.typed) == ("tasks", "转发朋友圈")


def test_the_activity_form_sends_the_chosen_types_boxes_only() -> None:
    form = {
        "type": "grab",
        "title": "双十二抢积分",
        "starts_at": "2026-12-10T00:00",
        "ends_at": "2026-12-13T00:00",
        "slots": "10:00-10:10",
        "slot_stock": "100",
        "passphrase": "老客专享",
        "questions": "left over from choosing survey first = a / b",
        "reward_points": "88",
        "per_member_limit": "",
        "budget_points": "",
        "segment_id": "seg_1",
        "min_tier_level": "2",
        "go_live": "1",
    }
    assert activity_from_form(form, ZoneInfo("Asia/Shanghai")) == {
        "type": "grab",
        "title": "双十二抢积分",
        "starts_at": "2026-12-10T00:00:00+08:00",
        "ends_at": "2026-12-13T00:00:00+08:00",
        "status": "live",
        "per_member_limit": None,
        "eligibility": {"segment_id": "seg_1", "min_tier_level": 2},
        "reward_points": 88,
        "slots": [{"start": "10:00", "end": "10:10"}],
        "slot_stock": 100,
        "passphrase": "老客专享",
    }
    # A number that is not one goes as typed, for the API to refuse by the field's name.
    draft = activity_from_form(
        {"type": "survey", "reward_points": "二十", "per_member_limit": "1"}, ZoneInfo("UTC")
    )
    assert (draft["status"], draft["reward_points"], draft["per_member_limit"]) == ("draft", "二十", 1)
    assert draft["eligibility"] == {"segment_id": None, "min_tier_level": 0} and "questions" not in draft


def test_a_lotterys_chances_are_typed_in_percent() -> None:
    assert [probability(x) for x in ("12.5", "5%", "100", " 0.5 ", "五", "")] == [
        "0.125",
        "0.05",
        "1",
        "0.005",
        "五",
        "",
    ]
    form = {
        "prize_name_0": "50 积分",
        "prize_percent_0": "10",
        "prize_points_0": "50",
        "prize_percent_1": "20",  # no name: no prize
        "prize_name_2": "茶杯券",
        "prize_percent_2": "2",
        "prize_coupon_template_id_2": "cpt_1",
        "prize_stock_2": "3",
    }
    assert prizes_from_form(form) == [
        {"name": "50 积分", "probability": "0.1", "points": 50},
        {"name": "茶杯券", "probability": "0.02", "coupon_template_id": "cpt_1", "stock": 3},
    ]


def test_counts_are_grouped_by_thousands() -> None:
    assert [count(v) for v in (1572, "3560799", 0, -12000, None, "∞")] == [
        "1,572",
        "3,560,799",
        "0",
        "-12,000",
        "None",
        "∞",
    ]
