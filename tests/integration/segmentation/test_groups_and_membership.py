"""Static groups (分组), and segment membership kept current with segment.entered / segment.exited."""

from __future__ import annotations

from typing import Any

from laoke.contracts.segmentation import SEGMENT_ENTERED, SEGMENT_EXITED
from laoke.contracts.topics import Topic
from laoke.testing.infra import Infra, events_on, eventually
from laoke.testing.plugin import ShopClient
from tests.integration.segmentation.shopping import buy, profile

MEMBERSHIP = frozenset({SEGMENT_ENTERED, SEGMENT_EXITED})


async def call(shop: ShopClient, method: str, path: str, body: Any = None) -> Any:
    return await shop.client.request(method, path, json=body, headers=shop.headers())


async def test_groups_by_id_and_from_segment(shop: ShopClient, other_shop: ShopClient, frozen: None) -> None:
    a = await buy(shop, "G-1", "g-a", 10, "50.00")
    b = await buy(shop, "G-2", "g-b", 120, "800.00")
    for customer in (a, b):
        await profile(shop, customer, 1)

    created = await call(shop, "POST", "/api/v1/groups", {"name": "电话回访", "description": "双11 后"})
    assert created.status_code == 201, created.text
    group = created.json()["id"]
    added = await call(shop, "POST", f"/api/v1/groups/{group}/members", {"customer_ids": [a, a]})
    assert added.json() == {"added": 1}
    again = await call(shop, "POST", f"/api/v1/groups/{group}/members", {"customer_ids": [a]})
    assert again.json() == {"added": 0}
    unknown = await call(shop, "POST", f"/api/v1/groups/{group}/members", {"customer_ids": [b, "cus_nope"]})
    assert unknown.status_code == 422 and "cus_nope" in unknown.text
    both = await call(
        shop, "POST", f"/api/v1/groups/{group}/members", {"customer_ids": [b], "segment_id": "x"}
    )
    assert both.status_code == 422
    assert (await call(shop, "GET", f"/api/v1/groups/{group}")).json()["size"] == 1, "nothing added on a 422"
    renamed = await call(shop, "PATCH", f"/api/v1/groups/{group}", {"name": "电话回访 (已完成)"})
    assert (renamed.json()["name"], renamed.json()["description"], renamed.json()["size"]) == (
        "电话回访 (已完成)",
        "双11 后",
        1,
    )
    assert (await call(shop, "PATCH", f"/api/v1/groups/{group}", {"description": None})).json()[
        "description"
    ] is None
    for bad in ({"name": None}, {"name": ""}, {"size": 3}):
        assert (await call(shop, "PATCH", f"/api/v1/groups/{group}", bad)).status_code == 422, bad
    assert (await call(other_shop, "PATCH", f"/api/v1/groups/{group}", {"name": "x"})).status_code == 404

    sleeping = await call(
        shop,
        "POST",
        "/api/v1/segments",
        {"name": "沉睡", "rule": {"field": "lifecycle", "op": "eq", "value": "sleeping"}},
    )
    copied = await call(
        shop, "POST", f"/api/v1/groups/{group}/members", {"segment_id": sleeping.json()["id"]}
    )
    assert copied.json() == {"added": 1}
    members = (await call(shop, "GET", f"/api/v1/groups/{group}/members")).json()["items"]
    assert sorted(m["customer_id"] for m in members) == sorted([a, b])
    filtered = await shop.client.get("/api/v1/customers", params={"group_id": group}, headers=shop.headers())
    assert len(filtered.json()["items"]) == 2
    in_group = {"field": "group", "op": "in", "value": [group]}
    assert (await call(shop, "POST", "/api/v1/segments/preview", {"rule": in_group})).json()["size"] == 2
    # A group that is not the shop's is refused, where it would silently match nobody.
    typo = {"any": [in_group, {"field": "group", "op": "not_in", "value": ["grp_nope"]}]}
    for method, path, body in (
        ("POST", "/api/v1/segments/preview", {"rule": typo}),
        ("POST", "/api/v1/segments", {"name": "x", "rule": typo}),
    ):
        refused = await call(shop, method, path, body)
        assert refused.status_code == 422 and "rule.any[1].value: group grp_nope not found" in refused.text
    foreign = await call(other_shop, "POST", "/api/v1/segments/preview", {"rule": in_group})
    assert foreign.status_code == 422 and f"group {group} not found" in foreign.text
    # A group a segment's rule names is not deleted (the segment would match nobody).
    made = await call(shop, "POST", "/api/v1/segments", {"name": "回访", "rule": {"all": [in_group]}})
    held = await call(shop, "DELETE", f"/api/v1/groups/{group}")
    assert held.status_code == 409 and "named by the rule of segment 回访" in held.text
    await call(shop, "DELETE", f"/api/v1/segments/{made.json()['id']}")
    detail = (await call(shop, "GET", f"/api/v1/customers/{a}")).json()
    assert detail["groups"] == [group]

    assert (await call(shop, "DELETE", f"/api/v1/groups/{group}/members/{a}")).status_code == 204
    assert (await call(shop, "GET", f"/api/v1/groups/{group}")).json()["size"] == 1

    for method, path in (
        ("GET", f"/api/v1/groups/{group}"),
        ("GET", f"/api/v1/groups/{group}/members"),
        ("DELETE", f"/api/v1/groups/{group}"),
    ):
        assert (await call(other_shop, method, path)).status_code == 404, (method, path)
    assert (await call(other_shop, "GET", "/api/v1/groups")).json()["items"] == []

    assert (await call(shop, "DELETE", f"/api/v1/groups/{group}")).status_code == 204
    assert (await call(shop, "GET", "/api/v1/groups")).json()["items"] == []


async def test_entering_and_leaving_a_segment_is_announced(
    shop: ShopClient, infra: Infra, frozen: None
) -> None:
    regular = await buy(shop, "M-1", "m-regular", 5, "100.00")
    vip = await buy(shop, "M-2", "m-vip", 5, "100.00")
    await profile(shop, regular, 1)
    await profile(shop, vip, 1)
    tagged = await call(shop, "POST", f"/api/v1/customers/{vip}/tags", {"tags": ["VIP"]})
    assert tagged.status_code == 200

    rule = {
        "all": [
            {"field": "tags", "op": "has", "value": "VIP"},
            {"field": "orders_count", "op": "gte", "value": 2},
        ]
    }
    saved = await call(shop, "POST", "/api/v1/segments", {"name": "复购 VIP", "rule": rule})
    assert saved.status_code == 201 and saved.json()["size"] == 0
    segment = saved.json()["id"]

    # A second order makes the VIP a member: entered, announced, counted.
    await buy(shop, "M-3", "m-vip", 1, "60.00")

    async def member() -> None:
        current = (await call(shop, "GET", f"/api/v1/segments/{segment}")).json()
        assert current["size"] == 1

    await eventually(member, within=20)
    members = (await call(shop, "GET", f"/api/v1/segments/{segment}/members")).json()["items"]
    assert [m["customer_id"] for m in members] == [vip]
    assert (await call(shop, "GET", f"/api/v1/customers/{vip}")).json()["segments"] == [segment]

    # Losing the tag makes them leave.
    assert (await call(shop, "DELETE", f"/api/v1/customers/{vip}/tags/VIP")).status_code == 204
    assert (await call(shop, "GET", f"/api/v1/segments/{segment}")).json()["size"] == 0

    # A changed rule re-evaluates everyone: the regular buyer (one order, no tag) now fits.
    changed = await call(
        shop,
        "PATCH",
        f"/api/v1/segments/{segment}",
        {"rule": {"field": "orders_count", "op": "eq", "value": 1}},
    )
    assert changed.status_code == 200 and changed.json()["size"] == 1
    bad = await call(
        shop, "PATCH", f"/api/v1/segments/{segment}", {"rule": {"field": "shoe_size", "op": "eq"}}
    )
    assert bad.status_code == 422

    events = await events_on(infra.bootstrap_servers, Topic.SEGMENTATION, shop.shop_id, 3, types=MEMBERSHIP)
    seen = sorted((e.type, e.payload["customer_id"]) for e in events)
    assert seen == sorted([(SEGMENT_ENTERED, vip), (SEGMENT_EXITED, vip), (SEGMENT_ENTERED, regular)])
    assert all(e.payload["segment_id"] == segment for e in events)
    vip_events = [e.type for e in events if e.payload["customer_id"] == vip]
    assert vip_events == [SEGMENT_ENTERED, SEGMENT_EXITED], "one buyer's events keep their order"
