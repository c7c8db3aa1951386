"""Profiles: who the buyer is (from orders, behaviour, loyalty and edits), masking, search and portrait."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.messaging import CONSENT_CHANGED
from laoke.contracts.segmentation import PROFILE_UPDATED
from laoke.contracts.topics import Topic
from laoke.kit.ids import encode_cursor
from laoke.testing.factories import order_json
from laoke.testing.infra import Infra, events_on, eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.segmentation.shopping import at, profile

RECEIVER = {"name": "李雷", "phone": "138 0013 8000", "address": "浙江省杭州市西湖区文三路100号"}


async def order(shop: ShopClient, order_id: str, buyer: str, days_ago: float, **extra: Any) -> str:
    body = order_json(
        order_id, buyer=buyer, total="100.00", placed_at=at(days_ago), completed_at=at(days_ago), **extra
    )
    response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
    assert response.status_code == 201, response.text
    return str(response.json()["order"]["customer_id"])


async def key_without_pii(shop: ShopClient) -> str:
    created = await shop.client.post(
        "/api/v1/keys", json={"name": "客服", "scopes": ["read", "write"]}, headers=shop.headers()
    )
    assert created.status_code == 201, created.text
    return str(created.json()["api_key"])


async def test_profile_from_orders_masked_without_pii_scope(shop: ShopClient, frozen: None) -> None:
    customer = await order(
        shop, "P-1", "buyer-li", 20, nick="tb_小李", mobile="13800138000", receiver=RECEIVER, channel="taobao"
    )
    seen = await profile(shop, customer, 1)
    # The shop's first key has every scope, pii included.
    assert seen["nick"] == "tb_小李" and seen["name"] == "李雷" and seen["mobile"] == "13800138000"
    assert (seen["province"], seen["city"]) == ("浙江省", "杭州市")  # parsed from the address
    assert seen["channels"] == ["taobao"] and seen["external_ids"] == {"taobao": "buyer-li"}

    plain = await key_without_pii(shop)
    masked = (await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers(plain))).json()
    assert masked["name"] == "李*" and masked["mobile"] == "138****8000"
    listed = (await shop.client.get("/api/v1/customers", headers=shop.headers())).json()["items"]
    assert listed[0]["mobile"] == "138****8000", "lists mask personal data even for pii keys"

    # A partial refund (same status, less money) reaches the profile.
    refund = order_json(
        "P-1",
        buyer="buyer-li",
        total="100.00",
        status="partially_refunded",
        refunds=[{"refund_id": "R-1", "amount": "30.00"}],
        placed_at=at(20),
        completed_at=at(20),
        modified_at=at(19),
        channel="taobao",
    )
    assert (await shop.client.post("/api/v1/orders", json=refund, headers=shop.headers())).status_code == 200

    async def refunded() -> None:
        now = (await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())).json()
        assert (now["refunds_count"], now["refunded"], now["total_spent"]) == (1, "30.00", "70.00")

    await eventually(refunded, within=20)


async def test_patch_is_kept_over_later_orders_and_announced(
    shop: ShopClient, other_shop: ShopClient, infra: Infra, frozen: None
) -> None:
    customer = await order(shop, "E-1", "buyer-e", 30, receiver=RECEIVER)
    await profile(shop, customer, 1)
    patch = {"name": "李雷雷", "gender": "male", "birthday": "1995-06-20", "mobile": "+86 139-0000-1111"}
    edited = await shop.client.patch(f"/api/v1/customers/{customer}", json=patch, headers=shop.headers())
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["name"], body["gender"], body["birthday"], body["mobile"]) == (
        "李雷雷",
        "male",
        "1995-06-20",
        "13900001111",
    )
    assert body["age"] == 30 and body["birthday_month"] == 6  # on 2026-06-01, before the birthday
    assert body["edited_fields"] == ["birthday", "gender", "mobile", "name"]

    # A later order names the receiver differently: the shop's edit stays, the new city is taken.
    later = {**RECEIVER, "name": "韩梅梅", "address": "上海市浦东新区世纪大道1号"}
    await order(shop, "E-2", "buyer-e", 5, receiver=later)
    after = await profile(shop, customer, 2)
    assert after["name"] == "李雷雷" and after["city"] == "上海市"

    for bad, field in (
        ({"gender": "robot"}, "gender"),
        ({"birthday": "2999-01-01"}, "birthday"),
        ({"mobile": "12345"}, "mobile"),
        ({"orders_count": 5}, "orders_count"),
    ):
        refused = await shop.client.patch(f"/api/v1/customers/{customer}", json=bad, headers=shop.headers())
        assert refused.status_code == 422 and field in refused.text, (bad, refused.text)
    unchanged = (await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())).json()
    assert (unchanged["gender"], unchanged["birthday"]) == ("male", "1995-06-20")
    foreign = await other_shop.client.patch(
        f"/api/v1/customers/{customer}", json={"name": "x"}, headers=other_shop.headers()
    )
    assert foreign.status_code == 404

    [announced] = await events_on(
        infra.bootstrap_servers, Topic.SEGMENTATION, shop.shop_id, 1, types=frozenset({PROFILE_UPDATED})
    )
    assert announced.payload["changed"] == ["birthday", "gender", "mobile", "name"]
    assert announced.payload["birthday"] == "1995-06-20" and announced.payload["profile_complete"] is True


async def test_search_by_name_nick_and_mobile(shop: ShopClient, frozen: None) -> None:
    li = await order(shop, "S-1", "s-li", 10, nick="茶客小李", mobile="13800138000", receiver=RECEIVER)
    wang = await order(
        shop, "S-2", "s-wang", 10, nick="wang_99", receiver={"name": "王芳", "phone": "13912345678"}
    )
    await profile(shop, li, 1)
    await profile(shop, wang, 1)

    async def found(q: str) -> list[str]:
        response = await shop.client.get("/api/v1/customers", params={"q": q}, headers=shop.headers())
        assert response.status_code == 200, response.text
        return [c["customer_id"] for c in response.json()["items"]]

    assert await found("小李") == [li]
    assert await found("王") == [wang]
    assert await found("WANG") == [wang]
    assert await found("5678") == [wang]  # the last four digits
    assert await found("1380013") == [li]
    assert await found("%") == []  # a wildcard is a plain character


async def test_customers_sorted_by_spend_orders_and_last_order_page_by_page(
    shop: ShopClient, frozen: None
) -> None:
    # a: 2 orders, 300 yuan, last 5 days ago; b: 1 order, 300 yuan, 1 day ago (ties a on spend);
    # c: 3 orders, 150 yuan, 40 days ago; d: 1 order, 900 yuan, 100 days ago; p: never bought.
    spend = {"a": ["100.00", "200.00"], "b": ["300.00"], "c": ["50.00"] * 3, "d": ["900.00"]}
    days = {"a": [9, 5], "b": [1], "c": [60, 50, 40], "d": [100]}
    ids: dict[str, str] = {}
    for who, totals in spend.items():
        for n, (total, ago) in enumerate(zip(totals, days[who], strict=True)):
            body = order_json(
                f"SORT-{who}-{n}", buyer=f"sort-{who}", total=total, placed_at=at(ago), completed_at=at(ago)
            )
            response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
            assert response.status_code == 201, response.text
            ids[who] = response.json()["order"]["customer_id"]
        await profile(shop, ids[who], len(totals))
    browsing = {
        "type": "browse",
        "buyer": {"external_id": "sort-p"},
        "item_id": "TEA-01",
        "occurred_at": at(1),
    }
    accepted = await shop.client.post("/api/v1/events", json={"events": [browsing]}, headers=shop.headers())
    ids["p"] = accepted.json()["customer_ids"][0]

    async def listed() -> None:
        page = await shop.client.get("/api/v1/customers", headers=shop.headers())
        assert len(page.json()["items"]) == 5

    await eventually(listed, within=20)

    async def walk(sort: str) -> list[str]:
        """Every page of two, following the cursors."""
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"sort": sort, "limit": 2} | ({"cursor": cursor} if cursor else {})
            response = await shop.client.get("/api/v1/customers", params=params, headers=shop.headers())
            assert response.status_code == 200, response.text
            seen += [c["customer_id"] for c in response.json()["items"]]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return seen

    def named(*who: str) -> list[str]:
        return [ids[w] for w in who]

    tie = sorted(named("a", "b"))  # the same spend: by customer id
    assert await walk("-total_spent") == [ids["d"], *reversed(tie), ids["c"], ids["p"]]
    assert await walk("total_spent") == [ids["p"], ids["c"], *tie, ids["d"]]
    assert (await walk("-orders_count"))[:2] == named("c", "a")
    assert await walk("-last_order_at") == named("b", "a", "c", "d", "p")  # never bought: last
    assert await walk("last_order_at") == named("d", "c", "a", "b", "p")  # ... either way
    assert sorted(await walk("customer_id")) == sorted(ids.values())

    first = await shop.client.get(
        "/api/v1/customers", params={"sort": "-total_spent", "limit": 1}, headers=shop.headers()
    )
    other_sort = await shop.client.get(
        "/api/v1/customers",
        params={"sort": "-last_order_at", "cursor": first.json()["next_cursor"]},
        headers=shop.headers(),
    )
    assert other_sort.status_code == 400 and "cursor" in other_sort.json()["detail"]
    crafted = (
        encode_cursor("-total_spent", str(10**30), ids["a"]),
        encode_cursor("-last_order_at", "2026-01-01T00:00:00", ids["a"]),  # no offset
    )
    for cursor in ("garbage", "Zm9v", *crafted):
        bad = await shop.client.get(
            "/api/v1/customers", params={"sort": "-total_spent", "cursor": cursor}, headers=shop.headers()
        )
        assert bad.status_code == 400, bad.text
    unknown = await shop.client.get("/api/v1/customers", params={"sort": "name"}, headers=shop.headers())
    assert unknown.status_code == 422 and "sort" in unknown.text


async def test_behaviour_makes_prospects_and_feeds_rules(shop: ShopClient, frozen: None) -> None:
    events = {
        "events": [
            {
                "type": "add_to_cart",
                "buyer": {"external_id": "p-1", "nick": "逛逛"},
                "item_id": "TEA-01",
                "occurred_at": at(2),
            },
            {
                "type": "favorite_item",
                "buyer": {"external_id": "p-1"},
                "item_id": "TEA-02",
                "occurred_at": at(20),
            },
        ]
    }
    accepted = await shop.client.post("/api/v1/events", json=events, headers=shop.headers())
    assert accepted.status_code == 202, accepted.text
    prospect = accepted.json()["customer_ids"][0]

    async def ready() -> dict[str, Any]:
        seen = await shop.client.get(f"/api/v1/customers/{prospect}", headers=shop.headers())
        assert seen.status_code == 200 and seen.json()["favorites_count"] == 1, seen.text
        return dict(seen.json())

    seen = await eventually(ready, within=20)
    assert seen["lifecycle"] == "prospect" and seen["carts_count"] == 1 and seen["nick"] == "逛逛"

    async def size(rule: dict[str, Any]) -> int:
        response = await shop.client.post(
            "/api/v1/segments/preview", json={"rule": rule}, headers=shop.headers()
        )
        assert response.status_code == 200, response.text
        return int(response.json()["size"])

    assert await size({"field": "carted", "op": "within_days", "value": 7}) == 1
    assert (
        await size({"field": "carted", "op": "within_days", "value": {"days": 7, "item_id": "TEA-02"}}) == 0
    )
    assert await size({"field": "favorited", "op": "within_days", "value": 7}) == 0
    assert await size({"field": "favorited", "op": "within_days", "value": 30}) == 1
    assert await size({"field": "lifecycle", "op": "eq", "value": "prospect"}) == 1
    bad = await shop.client.post(
        "/api/v1/segments/preview",
        json={"rule": {"field": "carted", "op": "within_days", "value": {"weeks": 1}}},
        headers=shop.headers(),
    )
    assert bad.status_code == 422 and "rule.value" in bad.text


async def test_points_and_tier_from_loyalty_reach_the_profile(shop: ShopClient, frozen: None) -> None:
    customer = await order(shop, "L-1", "l-buyer", 3)

    async def points() -> None:
        seen = (await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())).json()
        assert seen.get("points_balance") == 100  # loyalty's default: 1 point per yuan

    await eventually(points, within=20)
    rule = {"field": "points_balance", "op": "gte", "value": 100}
    preview = await shop.client.post("/api/v1/segments/preview", json={"rule": rule}, headers=shop.headers())
    assert preview.json()["size"] == 1


async def test_portrait_of_shop_and_segment(shop: ShopClient, frozen: None) -> None:
    a = await order(shop, "Q-1", "q-a", 10, receiver=RECEIVER)
    b = await order(shop, "Q-2", "q-b", 10, receiver={"province": "广东省", "city": "深圳市"})
    c = await order(shop, "Q-3", "q-c", 200)
    for customer in (a, b, c):
        await profile(shop, customer, 1)
    for customer, patch in ((a, {"gender": "male", "birthday": "2000-01-01"}), (b, {"gender": "female"})):
        response = await shop.client.patch(
            f"/api/v1/customers/{customer}", json=patch, headers=shop.headers()
        )
        assert response.status_code == 200, response.text

    whole = await shop.client.get("/api/v1/analytics/portrait", headers=shop.headers())
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["customers"] == 3
    assert {s["value"]: s["customers"] for s in body["gender"]} == {"male": 1, "female": 1, "unknown": 1}
    assert [(s["value"], s["customers"]) for s in body["age_bands"]] == [("25-29", 1), ("unknown", 2)]
    assert [s["value"] for s in body["provinces"]] == ["广东省", "浙江省", "unknown"]

    active = await shop.client.post(
        "/api/v1/segments",
        json={"name": "活跃", "rule": {"field": "lifecycle", "op": "in", "value": ["new", "active"]}},
        headers=shop.headers(),
    )
    segment = active.json()["id"]
    part = await shop.client.get(
        "/api/v1/analytics/portrait", params={"segment_id": segment}, headers=shop.headers()
    )
    assert part.json()["customers"] == 2
    missing = await shop.client.get(
        "/api/v1/analytics/portrait", params={"segment_id": "seg_nope"}, headers=shop.headers()
    )
    assert missing.status_code == 404


async def test_consent_from_messaging_reaches_the_profile(
    shop: ShopClient, stack: ServerSet, frozen: None
) -> None:
    customer = await order(shop, "C-1", "buyer-consent", 5)
    await profile(shop, customer, 1)
    opted_out = EventEnvelope(
        type=CONSENT_CHANGED,
        shop_id=shop.shop_id,
        producer="messaging",
        payload={"customer_id": customer, "channel": "sms", "subscribed": False, "source": "sms_reply"},
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack["segmentation"].settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            Topic.MESSAGING,
            opted_out.model_dump_json().encode(),
            key=event_key(shop.shop_id, customer).encode(),
        )
    finally:
        await producer.stop()

    async def recorded() -> None:
        seen = (await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())).json()
        assert seen["consent"] == {"sms": False}

    await eventually(recorded, within=20)
