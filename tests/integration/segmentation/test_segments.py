"""Segments, tags and the customer list: rules compiled safely, results matching the hand count."""

from __future__ import annotations

from typing import Any

from laoke.testing.plugin import ShopClient
from tests.integration.segmentation.shopping import buy, profile

SLEEPING_BIG = {
    "all": [
        {"field": "lifecycle", "op": "eq", "value": "sleeping"},
        {"field": "total_spent", "op": "gte", "value": "500"},
    ]
}

SLEEPING = {"field": "lifecycle", "op": "eq", "value": "sleeping"}


async def three_buyers(shop: ShopClient) -> tuple[str, str, str]:
    a = await buy(shop, "A-1", "a", 10, "80.00")  # new, small
    b = await buy(shop, "B-1", "b", 120, "900.00")  # sleeping, big
    c = await buy(shop, "C-1", "c", 150, "100.00")  # sleeping, small
    for customer in (a, b, c):
        await profile(shop, customer, 1)
    return a, b, c


async def post(shop: ShopClient, path: str, body: Any) -> Any:
    return await shop.client.post(path, json=body, headers=shop.headers())


async def test_preview_save_list_members_tag_and_delete(shop: ShopClient, frozen: None) -> None:
    a, b, c = await three_buyers(shop)
    preview = await post(shop, "/api/v1/segments/preview", {"rule": SLEEPING_BIG})
    assert preview.status_code == 200, preview.text
    assert preview.json()["size"] == 1 and [x["customer_id"] for x in preview.json()["sample"]] == [b]

    either = {"any": [{"field": "recency_days", "op": "lte", "value": 30}, {"not": SLEEPING_BIG}]}
    matched = (await post(shop, "/api/v1/segments/preview", {"rule": either})).json()
    assert matched["size"] == 2 and {x["customer_id"] for x in matched["sample"]} == {a, c}

    saved = await post(shop, "/api/v1/segments", {"name": "沉睡的大客户", "rule": SLEEPING_BIG})
    assert saved.status_code == 201 and saved.json()["size"] == 1
    segment_id = saved.json()["id"]
    members = await shop.client.get(f"/api/v1/segments/{segment_id}/members", headers=shop.headers())
    assert [m["customer_id"] for m in members.json()["items"]] == [b]

    tagged = await post(shop, f"/api/v1/segments/{segment_id}/tags", {"tag": "召回"})
    assert tagged.json() == {"tagged": 1}
    by_tag = await shop.client.get("/api/v1/customers", params={"tag": "召回"}, headers=shop.headers())
    assert [x["customer_id"] for x in by_tag.json()["items"]] == [b]
    assert by_tag.json()["items"][0]["tags"] == ["召回"]
    sleeping = await shop.client.get(
        "/api/v1/customers", params={"lifecycle": "sleeping"}, headers=shop.headers()
    )
    assert {x["customer_id"] for x in sleeping.json()["items"]} == {b, c}
    via_segment = await shop.client.get(
        "/api/v1/customers", params={"segment_id": segment_id}, headers=shop.headers()
    )
    assert [x["customer_id"] for x in via_segment.json()["items"]] == [b]

    # A segment's and a group's members in the customer list's orders.
    sleepers = await post(shop, "/api/v1/segments", {"name": "沉睡", "rule": SLEEPING})
    by_spend = await shop.client.get(
        f"/api/v1/segments/{sleepers.json()['id']}/members",
        params={"sort": "-total_spent", "limit": 1},
        headers=shop.headers(),
    )
    assert [m["customer_id"] for m in by_spend.json()["items"]] == [b]
    rest = await shop.client.get(
        f"/api/v1/segments/{sleepers.json()['id']}/members",
        params={"sort": "-total_spent", "cursor": by_spend.json()["next_cursor"]},
        headers=shop.headers(),
    )
    assert [m["customer_id"] for m in rest.json()["items"]] == [c]
    group = await post(shop, "/api/v1/groups", {"name": "全部"})
    await post(shop, f"/api/v1/groups/{group.json()['id']}/members", {"customer_ids": [a, b, c]})
    latest = await shop.client.get(
        f"/api/v1/groups/{group.json()['id']}/members",
        params={"sort": "-last_order_at"},
        headers=shop.headers(),
    )
    assert [m["customer_id"] for m in latest.json()["items"]] == [a, b, c]

    tag_rule = {"field": "tags", "op": "has_none", "value": ["召回"]}
    assert (await post(shop, "/api/v1/segments/preview", {"rule": tag_rule})).json()["size"] == 2

    gone = await shop.client.delete(f"/api/v1/segments/{segment_id}", headers=shop.headers())
    assert gone.status_code == 204
    assert (
        await shop.client.get(f"/api/v1/segments/{segment_id}", headers=shop.headers())
    ).status_code == 404


async def test_customer_tags_and_cursor_pages(shop: ShopClient, frozen: None) -> None:
    a, b, c = await three_buyers(shop)
    added = await post(shop, f"/api/v1/customers/{a}/tags", {"tags": ["VIP", "爱喝绿茶", "VIP"]})
    assert added.status_code == 200 and added.json() == ["VIP", "爱喝绿茶"]
    removed = await shop.client.delete(f"/api/v1/customers/{a}/tags/VIP", headers=shop.headers())
    assert removed.status_code == 204
    assert (await shop.client.get(f"/api/v1/customers/{a}", headers=shop.headers())).json()["tags"] == [
        "爱喝绿茶"
    ]

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await shop.client.get("/api/v1/customers", params=params, headers=shop.headers())).json()
        seen += [x["customer_id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([a, b, c]) and len(seen) == 3


async def test_bad_rules_are_422_naming_where(shop: ShopClient) -> None:
    deep: dict[str, Any] = {"field": "orders_count", "op": "gt", "value": 0}
    for _ in range(9):
        deep = {"not": deep}
    many = {"any": [{"field": "orders_count", "op": "eq", "value": i} for i in range(101)]}
    cases = [
        (
            {"all": [{"field": "colour", "op": "eq", "value": "red"}]},
            "rule.all[0].field: unknown field 'colour'",
        ),
        ({"field": "total_spent", "op": "has", "value": 1}, "rule.op: 'has' does not apply to total_spent"),
        ({"field": "total_spent", "op": "gte", "value": "lots"}, "rule.value: expected an amount in yuan"),
        ({"field": "orders_count", "op": "gt", "value": "3"}, "rule.value: expected a whole number"),
        ({"field": "lifecycle", "op": "eq", "value": "asleep"}, "rule.value: unknown lifecycle 'asleep'"),
        ({"field": "orders_count", "op": "between", "value": [1]}, "between takes [low, high]"),
        (
            {"field": "total_spent", "op": "between", "value": ["500", "100"]},
            "between takes [low, high], and 500 is above 100",
        ),
        (
            {
                "field": "last_order_at",
                "op": "between",
                "value": ["2026-06-01T00:00:00+08:00", "2026-01-01T00:00:00+08:00"],
            },
            "between takes [low, high], and 2026-06-01",
        ),
        ({"field": "last_order_at", "op": "after", "value": "2026-01-01"}, "give a time zone"),
        ({"all": []}, "rule.all: expected a non-empty list"),
        ({"maybe": []}, "expected all, any, not, or field/op/value"),
        (deep, "rules may nest at most 8 levels"),
        (many, "at most 100 conditions"),
    ]
    for rule, expected in cases:
        response = await post(shop, "/api/v1/segments/preview", {"rule": rule})
        assert response.status_code == 422, (expected, response.text)
        assert expected in response.json()["detail"], response.json()
    bad_save = await post(shop, "/api/v1/segments", {"name": "x", "rule": cases[0][0]})
    assert bad_save.status_code == 422
    assert (await shop.client.get("/api/v1/segments", headers=shop.headers())).json()["items"] == []


async def test_segments_and_tags_stay_in_their_shop(
    shop: ShopClient, other_shop: ShopClient, frozen: None
) -> None:
    a, _, _ = await three_buyers(shop)
    saved = await post(shop, "/api/v1/segments", {"name": "all sleeping", "rule": SLEEPING_BIG})
    segment_id = saved.json()["id"]
    theirs = other_shop.headers()
    assert (await other_shop.client.get(f"/api/v1/segments/{segment_id}", headers=theirs)).status_code == 404
    assert (
        await other_shop.client.post(f"/api/v1/customers/{a}/tags", json={"tags": ["x"]}, headers=theirs)
    ).status_code == 404
    listed = await other_shop.client.get("/api/v1/customers", headers=theirs)
    assert listed.json()["items"] == []
    preview = await other_shop.client.post(
        "/api/v1/segments/preview",
        json={"rule": {"field": "orders_count", "op": "gte", "value": 0}},
        headers=theirs,
    )
    assert preview.json()["size"] == 0
