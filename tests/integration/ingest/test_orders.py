"""Order upsert rules: one order per source id, stale updates never win, one event per real change."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.kit import clock
from laoke.kit.db import Database
from laoke.kit.outbox import Outbox
from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from services.ingest.models import Order, plumbing
from services.ingest.orders import upsert_order
from services.ingest.schemas import OrderIn

BASE = order_json(
    "LC-1",
    buyer="buyer-7",
    status="created",
    total="99.90",
    placed_at="2026-11-20T09:00:00+08:00",
    modified_at="2026-11-20T09:00:00+08:00",
)


async def event_types(stack: ServerSet, shop_id: str) -> list[str]:
    engine = create_async_engine(stack["ingest"].settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT event_type FROM ingest.outbox WHERE shop_id = :s ORDER BY id"), {"s": shop_id}
            )
            return [r[0] for r in rows]
    finally:
        await engine.dispose()


async def test_lifecycle_emits_one_event_per_real_change(shop: ShopClient, stack: ServerSet) -> None:
    post = shop.client.post
    first = await post("/api/v1/orders", json=BASE, headers=shop.headers())
    assert first.status_code == 201 and first.json()["outcome"] == "created"
    assert first.json()["order"]["paid_amount"] == "0.00"

    again = await post("/api/v1/orders", json=BASE, headers=shop.headers())
    assert again.status_code == 200 and again.json()["outcome"] == "unchanged"

    paid = {
        **BASE,
        "status": "paid",
        "paid_at": "2026-11-20T09:05:00+08:00",
        "modified_at": "2026-11-20T09:05:00+08:00",
    }
    updated = await post("/api/v1/orders", json=paid, headers=shop.headers())
    assert updated.json()["outcome"] == "updated"
    assert updated.json()["order"]["paid_amount"] == "99.90"
    assert updated.json()["order"]["id"] == first.json()["order"]["id"]

    assert await event_types(stack, shop.shop_id) == ["order.created", "order.paid"]


async def test_stale_update_never_overwrites_newer_state(shop: ShopClient, stack: ServerSet) -> None:
    completed = {
        **BASE,
        "order_id": "LC-2",
        "status": "completed",
        "modified_at": "2026-11-21T12:00:00+08:00",
    }
    assert (
        await shop.client.post("/api/v1/orders", json=completed, headers=shop.headers())
    ).status_code == 201
    stale = {**BASE, "order_id": "LC-2", "status": "paid", "modified_at": "2026-11-20T12:00:00+08:00"}
    response = await shop.client.post("/api/v1/orders", json=stale, headers=shop.headers())
    assert response.status_code == 200
    assert response.json()["outcome"] == "stale"
    assert response.json()["order"]["status"] == "completed"
    assert await event_types(stack, shop.shop_id) == ["order.completed"]


async def test_invalid_orders_are_rejected_and_nothing_is_written(shop: ShopClient, stack: ServerSet) -> None:
    bad_bodies = [
        {**BASE, "total_amount": "-1.00"},
        {**BASE, "total_amount": "1.234"},
        {**BASE, "paid_amount": "100.00"},  # more than the total
        {**BASE, "placed_at": "2026-11-20T09:00:00"},  # no time zone
        {**BASE, "buyer": {"external_id": ""}},
        {**BASE, "unexpected": 1},
        {k: v for k, v in BASE.items() if k != "buyer"},
    ]
    for body in bad_bodies:
        response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
        assert response.status_code == 422, body
        assert response.json()["error"] == "validation_error"
    assert await event_types(stack, shop.shop_id) == []


FULL = order_json(
    "LC-FULL",
    buyer="buyer-9",
    status="partially_refunded",
    total="300.00",
    refunded_amount="100.00",
    coupon_codes=["NEW10", "VIP5"],
    items=[{"sku": "TEA-01", "title": "明前龙井 250g", "quantity": 2, "price": "150.00"}],
    receiver={
        "name": "李雷",
        "phone": "13800138000",
        "province": "浙江省",
        "city": "杭州市",
        "district": "西湖区",
        "address": "文三路 100 号",
    },
    paid_at="2026-11-20T09:31:00+08:00",
    shipped_at="2026-11-20T16:00:00+08:00",
)


async def test_receiver_is_masked_without_the_pii_scope(shop: ShopClient) -> None:
    created = await shop.client.post("/api/v1/orders", json=FULL, headers=shop.headers())
    assert created.status_code == 201, created.text
    order = created.json()["order"]
    # The shop's first key has every scope, pii included.
    assert order["receiver"]["phone"] == "13800138000"
    assert order["refunded_amount"] == "100.00" and order["paid_amount"] == "300.00"
    assert order["coupon_codes"] == ["NEW10", "VIP5"] and order["item_count"] == 2
    assert order["shipped_at"] is not None

    key = await shop.client.post(
        "/api/v1/keys", json={"name": "ERP", "scopes": ["read", "write"]}, headers=shop.headers()
    )
    plain = key.json()["api_key"]
    seen = await shop.client.get(f"/api/v1/orders/{order['id']}", headers=shop.headers(plain))
    receiver = seen.json()["receiver"]
    assert receiver == {
        "name": "李*",
        "phone": "138****8000",
        "province": "浙江省",
        "city": "杭州市",
        "district": "西湖区",
        "address": "***",
        "zip": None,
    }


async def test_bad_amounts_and_statuses_are_refused_with_the_field_named(shop: ShopClient) -> None:
    cases = [
        ("total_amount: Input should be greater than or equal to 0", {**BASE, "total_amount": "-5.00"}),
        ("total_amount: Input should be a valid decimal", {**BASE, "total_amount": "abc"}),
        ("status: Input should be 'created'", {**BASE, "status": "lost_in_mail"}),
        ("refunded_amount cannot exceed", {**FULL, "refunded_amount": "400.00"}),
    ]
    for expected, body in cases:
        response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
        assert response.status_code == 422, (expected, response.text)
        assert response.json()["error"] == "validation_error"
        assert expected in response.json()["detail"], response.json()


async def test_a_refunded_order_was_paid_and_by_default_refunded_in_full(shop: ShopClient) -> None:
    post = shop.client.post
    refunded = order_json("RF-1", buyer="buyer-rf", status="refunded", total="128.50")
    given = await post(
        "/api/v1/orders", json={**refunded, "refunded_amount": "128.50"}, headers=shop.headers()
    )
    assert given.status_code == 201, given.text
    assert (given.json()["order"]["paid_amount"], given.json()["order"]["refunded_amount"]) == (
        "128.50",
        "128.50",
    )
    implied = await post("/api/v1/orders", json={**refunded, "order_id": "RF-2"}, headers=shop.headers())
    assert implied.status_code == 201, implied.text
    assert (implied.json()["order"]["paid_amount"], implied.json()["order"]["refunded_amount"]) == (
        "128.50",
        "128.50",
    )
    # A completed order refunded later, in full, without restating what was paid.
    completed = order_json("RF-3", buyer="buyer-rf", total="60.00", modified_at="2026-11-20T10:00:00+08:00")
    assert (await post("/api/v1/orders", json=completed, headers=shop.headers())).status_code == 201
    later = {
        **completed,
        "status": "refunded",
        "refunded_amount": "60.00",
        "modified_at": "2026-11-25T10:00:00+08:00",
    }
    update = await post("/api/v1/orders", json=later, headers=shop.headers())
    assert update.status_code == 200 and update.json()["outcome"] == "updated", update.text
    assert update.json()["order"]["refunded_amount"] == "60.00"


async def test_an_update_keeps_what_its_sender_left_out(shop: ShopClient, stack: ServerSet) -> None:
    post = shop.client.post
    full = order_json(
        "KP-1",
        buyer="buyer-kp",
        nick="小王",
        status="paid",
        total="300.00",
        paid_at="2026-11-20T09:05:00+08:00",
        modified_at="2026-11-20T09:05:00+08:00",
        items=[{"sku": "LJ-250", "title": "龙井 250g", "quantity": 2, "price": "150.00"}],
        coupon_codes=["NEW10"],
        receiver={"name": "王五", "phone": "13800138000", "province": "浙江省", "city": "杭州市"},
    )
    assert (await post("/api/v1/orders", json=full, headers=shop.headers())).status_code == 201
    refund = {
        **full,
        "status": "partially_refunded",
        "refunds": [{"refund_id": "R-1", "amount": "100.00"}],
        "modified_at": "2026-11-22T10:00:00+08:00",
    }
    assert (await post("/api/v1/orders", json=refund, headers=shop.headers())).json()["outcome"] == "updated"
    # An app that only reports the order finished: nothing it did not mention is lost, the refund stays.
    status_only = order_json(
        "KP-1",
        buyer="buyer-kp",
        status="completed",
        total="300.00",
        completed_at="2026-11-25T10:00:00+08:00",
    )
    kept = await post("/api/v1/orders", json=status_only, headers=shop.headers())
    assert kept.status_code == 200 and kept.json()["outcome"] == "updated", kept.text
    order = kept.json()["order"]
    assert (order["status"], order["paid_amount"], order["refunded_amount"]) == (
        "partially_refunded",
        "300.00",
        "100.00",
    )
    assert (order["item_count"], order["items"][0]["sku"], order["coupon_codes"], order["buyer_nick"]) == (
        2,
        "LJ-250",
        ["NEW10"],
        "小王",
    )
    assert order["receiver"]["province"] == "浙江省"
    assert (datetime.fromisoformat(order["paid_at"]), datetime.fromisoformat(order["completed_at"])) == (
        datetime.fromisoformat("2026-11-20T09:05:00+08:00"),
        datetime.fromisoformat("2026-11-25T10:00:00+08:00"),
    )

    async def credited() -> None:
        # Points wait for completion (the default); the 200 kept of 300 earn 200 once it is announced.
        member = await shop.client.get(
            f"/api/v1/loyalty/members/{order['customer_id']}", headers=shop.headers()
        )
        assert member.status_code == 200 and member.json()["points_available"] == 200, member.text

    await eventually(credited, within=20)
    # Sent, even empty, replaces.
    emptied = await post(
        "/api/v1/orders",
        json={**status_only, "items": [], "coupon_codes": [], "modified_at": "2026-11-26T10:00:00+08:00"},
        headers=shop.headers(),
    )
    assert (emptied.json()["order"]["items"], emptied.json()["order"]["coupon_codes"]) == ([], [])
    assert emptied.json()["order"]["refunded_amount"] == "100.00"
    # The completion is announced though the status stays partially_refunded; emptying items is not news.
    assert await event_types(stack, shop.shop_id) == ["order.paid", "order.refunded", "order.completed"]


async def test_times_more_than_a_day_in_the_future_are_refused(shop: ShopClient, stack: ServerSet) -> None:
    soon = (clock.now() + timedelta(hours=12)).isoformat()
    near = order_json("FUT-1", buyer="buyer-fut", placed_at=soon)
    assert (await shop.client.post("/api/v1/orders", json=near, headers=shop.headers())).status_code == 201
    for field in ("placed_at", "modified_at", "completed_at"):
        body = order_json("FUT-2", buyer="buyer-fut", **{field: "2062-11-20T09:30:00+08:00"})
        response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
        assert response.status_code == 422, response.text
        assert (
            f"{field} 2062-11-20T09:30:00+08:00 is more than a day in the future" in response.json()["detail"]
        )
    assert await event_types(stack, shop.shop_id) == ["order.completed"]


async def test_an_order_and_its_event_are_written_in_one_round_trip(stack: ServerSet) -> None:
    """A new buyer's first order costs three round trips (the buyer looked up, created, and the order
    written with its event); an update of it three (the buyer looked up, the order locked and read where
    the insert found it, its new state written with its event); the same state again two, writing
    nothing, not even a stray event."""
    db = Database(stack["ingest"].settings)
    outbox = Outbox(plumbing.outbox, "ingest")
    shop_id = f"shp_{uuid.uuid4().hex[:12]}"
    paid = order_json("RT-1", buyer="tb_round_trips", mobile="13600136000", status="paid")
    shipped = {**paid, "status": "shipped", "modified_at": "2026-11-21T10:00:00+08:00"}
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.startswith("SELECT ingest.shop_settings"):
            statements.append(" ".join(statement.split()))

    async def upsert(body: dict[str, object]) -> tuple[str, Order, list[str]]:
        statements.clear()
        outcome, order = await upsert_order(session, outbox, shop_id, OrderIn.model_validate(body))
        return outcome, order, list(statements)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.transaction() as session:
            created, first, creating = await upsert(paid)
            updated, second, updating = await upsert(shipped)
            unchanged, third, repeating = await upsert(shipped)
            stale, fourth, _ = await upsert(paid)
            events = (
                await session.execute(
                    text(
                        "SELECT event_type, key, envelope FROM ingest.outbox WHERE shop_id = :s ORDER BY id"
                    ),
                    {"s": shop_id},
                )
            ).all()
            stored = (
                await session.execute(
                    text("SELECT status, shipped_at IS NOT NULL FROM ingest.orders WHERE shop_id = :s"),
                    {"s": shop_id},
                )
            ).all()
            await session.rollback()
    finally:
        await db.dispose()
    assert (created, updated, unchanged, stale) == ("created", "updated", "unchanged", "stale")
    assert first.id == second.id == third.id == fourth.id
    assert (second.status, third.status, fourth.status) == ("shipped", "shipped", "shipped")
    assert stored == [("shipped", False)]  # the body carries no shipped_at; the status moved
    lookup, create, insert = creating
    assert "FROM unnest" in lookup and "INSERT INTO ingest.customers" in create
    assert "INSERT INTO ingest.orders" in insert and "INSERT INTO ingest.outbox" in insert
    lookup, lock, write = updating
    assert "INSERT INTO ingest.orders" in lock and "FOR UPDATE" in lock
    assert "UPDATE ingest.orders" in write and "INSERT INTO ingest.outbox" in write
    assert len(repeating) == 2
    assert [(t, k) for t, k, _ in events] == [
        ("order.paid", f"{shop_id}:{first.customer_id}"),
        ("order.shipped", f"{shop_id}:{first.customer_id}"),
    ]
    paid_event, shipped_event = (envelope["payload"] for _, _, envelope in events)
    assert paid_event["order_id"] == shipped_event["order_id"] == first.id
    assert paid_event["buyer"]["mobile"] == "13600136000"
    assert (paid_event["previous_status"], shipped_event["previous_status"]) == (None, "paid")


async def test_concurrent_copies_of_a_new_order_make_one_order_and_one_event(
    shop: ShopClient, stack: ServerSet
) -> None:
    body = order_json("TWINS-1", buyer="tb_twins", status="paid")
    answers = await asyncio.gather(
        *(shop.client.post("/api/v1/orders", json=body, headers=shop.headers()) for _ in range(8))
    )
    outcomes = sorted(answer.json()["outcome"] for answer in answers)
    assert outcomes == ["created"] + ["unchanged"] * 7
    assert len({answer.json()["order"]["id"] for answer in answers}) == 1
    assert await event_types(stack, shop.shop_id) == ["order.paid"]
