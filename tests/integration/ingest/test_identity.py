"""Buyer identity: one customer per buyer within a channel, merged across channels by mobile."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.kit.db import Database
from laoke.kit.outbox import Outbox
from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from services.ingest.identity import IdentityResolver, buyer_keys
from services.ingest.models import plumbing


async def post(shop: ShopClient, body: dict[str, object]) -> dict[str, object]:
    response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
    assert response.status_code in (200, 201), response.text
    return response.json()["order"]


async def lookup(shop: ShopClient, channel: str, external_id: str) -> str:
    response = await shop.client.get(
        "/api/v1/customers/lookup",
        params={"channel": channel, "external_id": external_id},
        headers=shop.headers(),
    )
    assert response.status_code == 200, response.text
    return response.json()["customer_id"]


async def ingest_rows(stack: ServerSet, sql: str, params: dict[str, object]) -> list[Any]:
    engine = create_async_engine(stack["ingest"].settings.database_url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(text(sql), params))
    finally:
        await engine.dispose()


async def merged_events(stack: ServerSet, shop_id: str) -> list[dict[str, object]]:
    rows = await ingest_rows(
        stack,
        "SELECT envelope FROM ingest.outbox WHERE shop_id = :s AND event_type = 'customer.merged'",
        {"s": shop_id},
    )
    return [json.loads(r[0])["payload"] if isinstance(r[0], str) else r[0]["payload"] for r in rows]


async def test_same_mobile_on_another_channel_is_the_same_customer(shop: ShopClient) -> None:
    taobao = await post(shop, order_json("TB-1", buyer="tb_xiaoli", channel="taobao", mobile="13800138000"))
    shopify = await post(
        shop, order_json("SH-1", buyer="7001", channel="shopify", mobile="+86 138-0013-8000")
    )
    assert shopify["customer_id"] == taobao["customer_id"]
    assert await lookup(shop, "shopify", "7001") == taobao["customer_id"]


async def test_email_identifies_a_buyer_within_a_channel(shop: ShopClient) -> None:
    first = await post(
        shop,
        {**order_json("WC-1", buyer="x", channel="woocommerce"), "buyer": {"email": "Anna@Example.com"}},
    )
    second = await post(
        shop,
        {**order_json("WC-2", buyer="x", channel="woocommerce"), "buyer": {"email": "anna@example.com"}},
    )
    assert first["customer_id"] == second["customer_id"]


async def test_a_later_mobile_merges_two_customers_and_announces_it(
    shop: ShopClient, stack: ServerSet
) -> None:
    known = await post(shop, order_json("TB-1", buyer="tb_wang", channel="taobao", mobile="13900139000"))
    stranger = await post(shop, order_json("SH-1", buyer="8001", channel="shopify"))
    assert stranger["customer_id"] != known["customer_id"]

    # The Shopify buyer now gives the mobile the Taobao buyer used: they are one person.
    again = await post(shop, order_json("SH-2", buyer="8001", channel="shopify", mobile="13900139000"))
    assert again["customer_id"] == known["customer_id"]
    assert await lookup(shop, "shopify", "8001") == known["customer_id"]
    moved = await shop.client.get(
        "/api/v1/orders", params={"customer_id": known["customer_id"]}, headers=shop.headers()
    )
    assert {o["order_id"] for o in moved.json()["items"]} == {"TB-1", "SH-1", "SH-2"}
    assert await merged_events(stack, shop.shop_id) == [
        {"from": stranger["customer_id"], "into": known["customer_id"], "reason": "mobile"}
    ]


async def test_merging_by_mobile_can_be_turned_off(shop: ShopClient) -> None:
    changed = await shop.client.patch(
        "/api/v1/ingest/settings", json={"merge_by_mobile": False}, headers=shop.headers()
    )
    assert changed.status_code == 200 and changed.json() == {
        "merge_by_mobile": False,
        "timezone": "Asia/Shanghai",
    }
    taobao = await post(shop, order_json("TB-1", buyer="tb_zhao", channel="taobao", mobile="13700137000"))
    shopify = await post(shop, order_json("SH-1", buyer="9001", channel="shopify", mobile="13700137000"))
    assert shopify["customer_id"] != taobao["customer_id"]


async def test_settings_reject_an_unknown_time_zone(shop: ShopClient) -> None:
    response = await shop.client.patch(
        "/api/v1/ingest/settings", json={"timezone": "Mars/Olympus"}, headers=shop.headers()
    )
    assert response.status_code == 422
    assert "Mars/Olympus" in response.json()["detail"]


async def test_an_order_without_any_buyer_identity_is_refused(shop: ShopClient) -> None:
    body = {**order_json("X-1", buyer="x"), "buyer": {"nick": "只有昵称", "mobile": "138****8000"}}
    response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
    assert response.status_code == 422
    assert "buyer needs external_id, email or a valid mobile number" in response.json()["detail"]


async def test_loyalty_and_segmentation_fold_a_merged_customer(shop: ShopClient) -> None:
    known = await post(
        shop, order_json("TB-9", buyer="tb_li", channel="taobao", mobile="13600136000", total="88.00")
    )
    stranger = await post(shop, order_json("SH-9", buyer="9901", channel="shopify", total="10.00"))

    async def credited(customer_id: str, points: int) -> None:
        member = await shop.client.get(f"/api/v1/loyalty/members/{customer_id}", headers=shop.headers())
        assert member.status_code == 200 and member.json()["points_available"] == points, member.text

    await eventually(lambda: credited(stranger["customer_id"], 10), within=20)

    async def tag_stranger() -> None:
        tagged = await shop.client.post(
            f"/api/v1/customers/{stranger['customer_id']}/tags",
            json={"tags": ["海外"]},
            headers=shop.headers(),
        )
        assert tagged.status_code == 200, tagged.text

    await eventually(tag_stranger, within=20)
    await post(shop, order_json("SH-10", buyer="9901", channel="shopify", mobile="13600136000", total="2.00"))

    async def folded() -> None:
        await credited(known["customer_id"], 100)
        gone = await shop.client.get(
            f"/api/v1/loyalty/members/{stranger['customer_id']}", headers=shop.headers()
        )
        assert gone.status_code == 404
        profile = await shop.client.get(f"/api/v1/customers/{known['customer_id']}", headers=shop.headers())
        assert profile.json()["orders_count"] == 3 and profile.json()["total_spent"] == "100.00", profile.text
        # Everything of the folded profile now belongs to the surviving one.
        assert profile.json()["tags"] == ["海外"]
        assert sorted(profile.json()["channels"]) == ["shopify", "taobao"]
        assert profile.json()["external_ids"] == {"taobao": "tb_li", "shopify": "9901"}
        old = await shop.client.get(f"/api/v1/customers/{stranger['customer_id']}", headers=shop.headers())
        assert old.status_code == 404

    await eventually(folded, within=20)


async def test_a_new_buyer_costs_one_lookup_and_one_creation_that_claims_every_key(
    stack: ServerSet,
) -> None:
    """Every order of a new buyer resolves its identity first, so each round trip counts: claiming the
    first key again after creating the customer (it conflicted, then was looked up) cost two more, the
    customer's own insert one more, and claiming each other key (the mobile) one more each."""
    db = Database(stack["ingest"].settings)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.transaction() as session:
            shop = f"shp_{uuid.uuid4().hex[:12]}"
            resolver = IdentityResolver(session, Outbox(plumbing.outbox, "ingest"), shop)
            keys = buyer_keys("taobao", "tb_new_buyer", None, "13900139000")
            customer_id = await resolver.resolve(keys, merge_by_mobile=True)
            resolving = list(statements)
            identities = await session.execute(
                text("SELECT channel, customer_id FROM ingest.customer_identities WHERE shop_id = :shop"),
                {"shop": shop},
            )
            assert dict(identities.all()) == {"taobao": customer_id, "mobile": customer_id}
            customers = await session.scalar(
                text("SELECT count(*) FROM ingest.customers WHERE shop_id = :shop AND id = :id"),
                {"shop": shop, "id": customer_id},
            )
            assert customers == 1
            await session.rollback()
    finally:
        await db.dispose()
    lookup, create = resolving  # exactly two round trips
    assert "FROM unnest" in lookup
    assert "INSERT INTO ingest.customer_identities" in create and "INSERT INTO ingest.customers" in create


async def test_concurrent_first_orders_of_one_buyer_make_one_customer(
    shop: ShopClient, stack: ServerSet
) -> None:
    orders = await asyncio.gather(
        *(post(shop, order_json(f"RACE-{n}", buyer="tb_racer", mobile="13700137000")) for n in range(8))
    )
    assert len({order["customer_id"] for order in orders}) == 1
    customers = await ingest_rows(
        stack,
        "SELECT c.id FROM ingest.customers c WHERE c.shop_id = :shop AND EXISTS ("
        "SELECT FROM ingest.customer_identities i WHERE i.shop_id = c.shop_id "
        "AND i.customer_id = c.id AND i.external_id = 'tb_racer')",
        {"shop": shop.shop_id},
    )
    assert [row.id for row in customers] == [orders[0]["customer_id"]]
    identities = await ingest_rows(
        stack,
        "SELECT channel, customer_id FROM ingest.customer_identities WHERE shop_id = :shop",
        {"shop": shop.shop_id},
    )
    assert {(row.channel, row.customer_id) for row in identities} == {
        ("api", orders[0]["customer_id"]),
        ("mobile", orders[0]["customer_id"]),
    }
