"""POST /api/v1/events: behaviour attributed to customers and published for segmentation."""

from __future__ import annotations

from laoke.contracts.topics import Topic
from laoke.testing.factories import order_json
from laoke.testing.infra import Infra, events_on
from laoke.testing.plugin import ShopClient

EVENTS = [
    {
        "type": "add_to_cart",
        "channel": "taobao",
        "buyer": {"external_id": "tb_behaviour"},
        "item_id": "600012345678",
        "item_title": "明前龙井 250g",
        "occurred_at": "2026-11-22T20:15:00+08:00",
    },
    {
        "type": "favorite_shop",
        "channel": "taobao",
        "buyer": {"external_id": "tb_behaviour"},
        "occurred_at": "2026-11-22T20:16:00+08:00",
    },
    {
        "type": "browse",
        "channel": "taobao",
        "buyer": {"external_id": "tb_newcomer"},
        "item_id": "600012345679",
        "occurred_at": "2026-11-22T20:17:00+08:00",
    },
]


async def test_behaviour_reaches_the_broker_attributed_to_customers(shop: ShopClient, infra: Infra) -> None:
    order = await shop.client.post(
        "/api/v1/orders",
        json=order_json("B-1", buyer="tb_behaviour", channel="taobao"),
        headers=shop.headers(),
    )
    known = order.json()["order"]["customer_id"]
    response = await shop.client.post("/api/v1/events", json={"events": EVENTS}, headers=shop.headers())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert body["customer_ids"][:2] == [known, known] and body["customer_ids"][2] != known

    events = await events_on(infra.bootstrap_servers, Topic.BEHAVIOUR, shop.shop_id, 3)
    # Ordered per buyer (one key, one partition); across buyers the partitions interleave freely.
    events.sort(key=lambda e: e.occurred_at)
    assert [(e.type, e.payload["customer_id"], e.payload.get("item_id")) for e in events] == [
        ("behaviour.add_to_cart", known, "600012345678"),
        ("behaviour.favorite_shop", known, None),
        ("behaviour.browse", body["customer_ids"][2], "600012345679"),
    ]
    assert events[0].occurred_at.isoformat().startswith("2026-11-22T12:15:00")


async def test_a_bad_event_refuses_the_batch_naming_it(shop: ShopClient) -> None:
    bad = [EVENTS[0], {**EVENTS[1], "type": "teleport"}]
    response = await shop.client.post("/api/v1/events", json={"events": bad}, headers=shop.headers())
    assert response.status_code == 422
    assert "events.1.type" in response.json()["detail"]
    empty = await shop.client.post("/api/v1/events", json={"events": []}, headers=shop.headers())
    assert empty.status_code == 422
