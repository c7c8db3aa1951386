from __future__ import annotations

from zoneinfo import ZoneInfo

from starlette.datastructures import FormData

from gateway.auth import issue_key, parse_key
from gateway.console.base import local_time
from gateway.console.i18n import api_message
from gateway.console.segments import rows_of, rule_from_form
from gateway.openapi import merge
from gateway.proxy import match_route
from laoke.kit.http_protocol import percent_encode_request_line


def test_issued_keys_parse_back_and_hash_is_not_the_secret() -> None:
    key_id, full_key, secret_hash = issue_key()
    parsed = parse_key(full_key)
    assert parsed is not None and parsed[0] == key_id
    assert parsed[1] not in secret_hash and len(secret_hash) == 64
    assert parse_key("lk__x") is None and parse_key("sk_a_b") is None and parse_key("lk_a") is None


def test_routes_go_to_the_owning_service() -> None:
    expected = {
        "/api/v1/orders": "ingest",
        "/api/v1/orders/ord_1": "ingest",
        "/api/v1/customers/lookup": "ingest",
        "/api/v1/customers/cus_1": "segmentation",
        "/api/v1/customers/cus_1/consent": "messaging",
        "/api/v1/loyalty/members/cus_1": "loyalty",
        "/api/v1/templates": "messaging",
    }
    for path, service in expected.items():
        route = match_route(path)
        assert route is not None and route.service == service, path
    assert match_route("/api/v1/ordersx") is None
    webhook = match_route("/api/v1/webhooks/shopify/shp_1")
    assert webhook is not None and webhook.public


def test_merge_keeps_every_path_and_names_missing_services() -> None:
    own = {"openapi": "3.1.0", "paths": {"/api/v1/me": {"get": {}}}, "components": {"schemas": {"Me": {}}}}
    ingest = {
        "paths": {"/api/v1/orders": {"post": {}}},
        "components": {"schemas": {"OrderIn": {"type": "object"}}},
    }
    doc = merge(own, {"ingest": ingest, "loyalty": None})
    assert list(doc["paths"]) == ["/api/v1/me", "/api/v1/orders"]
    assert set(doc["components"]["schemas"]) == {"Me", "OrderIn"}
    assert doc["x-laoke-unavailable"] == ["loyalty"]
    assert own["paths"] == {"/api/v1/me": {"get": {}}}  # the gateway's own document is not mutated


def test_the_segment_builder_takes_the_chinese_words_the_console_shows() -> None:
    form = FormData(
        [
            ("combine", "all"),
            ("field_0", "lifecycle"),
            ("op_0", "in"),
            ("value_0", '["沉睡", "流失"]'),
            ("field_1", "gender"),
            ("op_1", "eq"),
            ("value_1", "女"),
            ("field_2", "orders_count"),
            ("op_2", "gte"),
            ("value_2", "3"),
            ("field_3", "tags"),
            ("op_3", "has"),
            ("value_3", "沉睡"),  # a tag is the shop's own word, kept as typed
        ]
    )
    assert rule_from_form(form) == {
        "all": [
            {"field": "lifecycle", "op": "in", "value": ["sleeping", "churned"]},
            {"field": "gender", "op": "eq", "value": "female"},
            {"field": "orders_count", "op": "gte", "value": 3},
            {"field": "tags", "op": "has", "value": "沉睡"},
        ]
    }


def test_a_rule_on_groups_is_typed_and_shown_by_their_names() -> None:
    groups = {"grp_1": "电话回访", "grp_2": "VIP 圈"}
    form = FormData(
        [("combine", "any"), ("field_0", "group"), ("op_0", "in"), ("value_0", "电话回访，VIP 圈、grp_9")]
    )
    rule = rule_from_form(form, groups)
    # An unknown name goes as typed: the API says which group it cannot find.
    assert rule == {"any": [{"field": "group", "op": "in", "value": ["grp_1", "grp_2", "grp_9"]}]}
    assert rows_of(rule, groups)[1][0]["value"] == "电话回访，VIP 圈，grp_9"


def test_console_times_are_read_on_the_shops_clock() -> None:
    shanghai, new_york = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
    assert local_time("2026-12-07T15:50:12.881555Z", shanghai) == "2026-12-07 23:50"
    assert local_time("2026-12-07T15:50:12+00:00", new_york) == "2026-12-07 10:50"
    assert local_time("2026-11-20T09:30:00+08:00", shanghai) == "2026-11-20 09:30"
    assert (local_time(None, shanghai), local_time("", shanghai)) == ("—", "—")
    assert local_time("not a time", shanghai) == "not a time"


def test_the_apis_validation_messages_read_in_chinese_and_laokes_own_stay() -> None:
    detail = (
        "name: String should have at least 1 character; holdout_percent: Input should be less than or "
        "equal to 50; channel: Input should be 'sms', 'email' or 'inapp'; tiers.0.discount: Input should "
        "be a valid integer, unable to parse string as an integer; rule: Field required"
    )
    assert api_message(detail, "zh") == (
        "name: 不能为空; holdout_percent: 应不大于 50; channel: 应为以下之一: 'sms', 'email'、'inapp'; "
        "tiers.0.discount: 应为整数; rule: 必填"
    )
    assert api_message(detail, "en") == detail
    tiers = "body: Value error, tier 3 pays more (98%) than tier 2 (95%): discounts never rise with level"
    assert api_message(tiers, "zh") == "body: 等级 3 的折扣 (98%) 不如等级 2 (95%)：等级越高，折扣越大"
    own = "body: Value error, valid_until must be after valid_from"
    assert api_message(own, "zh") == "body: valid_until must be after valid_from"  # not in the table
    assert api_message("member cus_x not found", "zh") == "member cus_x not found"
    assert api_message("email: String should match pattern '^[^@]+@[^@]+$'", "zh") == "email: 格式不对"


def test_only_the_request_line_is_percent_encoded() -> None:
    raw = "GET /api/v1/customers?q=张三 HTTP/1.1\r\nX-Note: 张三\r\n\r\n".encode()
    assert percent_encode_request_line(raw) == (
        b"GET /api/v1/customers?q=%E5%BC%A0%E4%B8%89 HTTP/1.1\r\nX-Note: " + "张三".encode() + b"\r\n\r\n"
    )
    assert percent_encode_request_line(b"GET /a HTTP/1.1\r\n") == b"GET /a HTTP/1.1\r\n"


def test_a_template_in_use_is_named_in_the_shop_owners_words() -> None:
    said = "template tpl_1 is still used by campaign 回访, automation winback (change or end them first)"
    assert api_message(said, "zh") == "模板正被使用：营销「回访」、自动化「沉睡唤醒」。请先修改或结束它们"
    assert api_message(said, "en") == said
