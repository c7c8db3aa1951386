"""Feedback tickets, and the automations that wait on the calendar: 疑难件 and birthdays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.topics import Topic
from laoke.kit.db import Database
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.messaging.helpers import NO_QUIET_HOURS, buyer, call, ok, template


async def test_feedback_ticket_goes_from_open_to_resolved_with_notes(
    shop: ShopClient, other_shop: ShopClient
) -> None:
    customer = await buyer(shop, "fb-1")
    opened = await ok(
        shop,
        "POST",
        "/api/v1/feedback",
        {"kind": "complaint", "subject": "收到的商品有破损", "customer_id": customer, "note": "顾客发来照片"},
        201,
    )
    assert (opened["status"], len(opened["notes"]), opened["hours_to_resolve"]) == ("open", 1, None)
    working = await ok(
        shop, "PATCH", f"/api/v1/feedback/{opened['id']}", {"status": "in_progress", "assignee": "小李"}
    )
    assert (working["status"], working["assignee"]) == ("in_progress", "小李")
    done = await ok(
        shop, "PATCH", f"/api/v1/feedback/{opened['id']}", {"status": "resolved", "note": "已补发"}
    )
    assert done["status"] == "resolved" and done["hours_to_resolve"] is not None
    assert [n["text"] for n in done["notes"]] == ["顾客发来照片", "已补发"]
    page = await ok(shop, "GET", "/api/v1/feedback")
    assert page["counts"] == {"open": 0, "in_progress": 0, "resolved": 1}
    assert page["median_hours_to_resolve"] is not None
    assert (
        await call(other_shop, "PATCH", f"/api/v1/feedback/{opened['id']}", {"status": "open"})
    ).status_code == 404
    bad = await call(shop, "POST", "/api/v1/feedback", {"kind": "rant", "subject": "x"})
    assert bad.status_code == 422


async def test_problem_shipment_messages_the_buyer_and_opens_a_ticket(shop: ShopClient) -> None:
    tpl = await template(shop, "inapp", "您的订单{{order_id}}还在路上，我们正在跟进")
    await ok(
        shop,
        "PUT",
        "/api/v1/automations/problem_shipment",
        {"channel": "inapp", "template_id": tpl, "delay_minutes": 60},
    )
    shipped = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    customer = await buyer(
        shop, "ps-1", status="shipped", order_id="PS-1", paid_at=shipped, shipped_at=shipped
    )
    recent = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    await buyer(shop, "ps-2", status="shipped", order_id="PS-2", paid_at=recent, shipped_at=recent)

    async def followed_up() -> None:
        inbox = await ok(shop, "GET", f"/api/v1/inbox/{customer}")
        assert [m["body"] for m in inbox["items"]] == ["您的订单PS-1还在路上，我们正在跟进"]
        tickets = (await ok(shop, "GET", "/api/v1/feedback"))["items"]
        assert [(t["kind"], t["customer_id"], t["status"]) for t in tickets] == [
            ("problem_shipment", customer, "open")
        ]

    await eventually(followed_up, within=20)


async def test_birthday_greeting_on_the_shop_local_date_once(shop: ShopClient) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    tpl = await template(shop, "inapp", "{{name}}，生日快乐！")
    await ok(shop, "PUT", "/api/v1/automations/birthday", {"channel": "inapp", "template_id": tpl})
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    customer = await buyer(shop, "bd-1", name="寿星")
    other = await buyer(shop, "bd-2", name="路人")
    for someone in (customer, other):  # segmentation must know them before the shop edits them

        async def profiled(someone: str = someone) -> None:
            assert (await call(shop, "GET", f"/api/v1/customers/{someone}")).status_code == 200

        await eventually(profiled, within=20)
    await ok(
        shop, "PATCH", f"/api/v1/customers/{customer}", {"birthday": today.replace(year=1990).isoformat()}
    )
    not_today = (today + timedelta(days=3)).replace(year=1991)
    await ok(shop, "PATCH", f"/api/v1/customers/{other}", {"birthday": not_today.isoformat()})

    async def greeted() -> None:
        inbox = await ok(shop, "GET", f"/api/v1/inbox/{customer}")
        assert [m["body"] for m in inbox["items"]] == ["寿星，生日快乐！"]

    await eventually(greeted, within=20)
    assert (await ok(shop, "GET", f"/api/v1/inbox/{other}"))["items"] == []


async def _publish(stack: ServerSet, topic: str, event: EventEnvelope) -> None:
    """An event as another service would emit it, straight onto its topic."""
    producer = AIOKafkaProducer(bootstrap_servers=stack["messaging"].settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        key = event_key(event.shop_id, str(event.payload["customer_id"]))
        await producer.send_and_wait(topic, event.model_dump_json().encode(), key=key.encode())
    finally:
        await producer.stop()


async def test_winback_tier_upgrade_and_points_expiring_follow_their_events(
    shop: ShopClient, stack: ServerSet
) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    for kind, body in (
        ("winback", "{{name}}，好久不见，回来看看吧"),
        ("tier_upgrade", "恭喜升级为{{tier}}"),
        ("points_expiring", "您有{{expiring_points}}积分将于{{expires_at}}过期"),
        ("welcome", "欢迎{{name}}"),
    ):
        tpl = await template(shop, "inapp", body)
        await ok(shop, "PUT", f"/api/v1/automations/{kind}", {"channel": "inapp", "template_id": tpl})
    customer = await buyer(shop, "ev-1", name="老王", status="paid", paid_at="2026-11-01T10:05:00+08:00")

    async def welcomed() -> None:  # messaging has absorbed the order: it knows the buyer's name
        assert [m["body"] for m in (await ok(shop, "GET", f"/api/v1/inbox/{customer}"))["items"]] == [
            "欢迎老王"
        ]

    await eventually(welcomed, within=20)

    def event(kind: str, payload: dict[str, object]) -> EventEnvelope:
        return EventEnvelope(
            type=kind, shop_id=shop.shop_id, producer="test", payload={"customer_id": customer, **payload}
        )

    await _publish(
        stack, Topic.SEGMENTATION, event("customer.lifecycle_changed", {"from": "active", "to": "sleeping"})
    )
    await _publish(
        stack, Topic.SEGMENTATION, event("customer.lifecycle_changed", {"from": "sleeping", "to": "churned"})
    )
    upgrade = event("loyalty.tier_changed", {"from_level": 1, "to_level": 2, "tier_name": "金卡"})
    await _publish(stack, Topic.LOYALTY, upgrade)
    await _publish(stack, Topic.LOYALTY, upgrade)  # redelivered: still one message
    await _publish(
        stack,
        Topic.LOYALTY,
        event("loyalty.tier_changed", {"from_level": 2, "to_level": 1, "tier_name": "银卡"}),
    )
    expiring = {"points": 300, "expires_at": "2026-12-31T16:00:00+00:00", "balance": 800}
    await _publish(stack, Topic.LOYALTY, event("loyalty.points_expiring", expiring))

    async def reached() -> None:
        inbox = await ok(shop, "GET", f"/api/v1/inbox/{customer}")
        assert sorted(m["body"] for m in inbox["items"]) == sorted(
            ["老王，好久不见，回来看看吧", "恭喜升级为金卡", "您有300积分将于2026-12-31过期", "欢迎老王"]
        ), inbox

    await eventually(reached, within=20)


async def test_a_buyers_contact_keeps_the_balance_of_their_last_points_change(
    shop: ShopClient, stack: ServerSet
) -> None:
    """Points changes arrive in runs; each buyer's contact (what `{{points}}` renders) keeps the balance
    of that buyer's last change, whatever else the run holds."""
    first = await buyer(shop, "pts-1", name="甲", status="created")  # unpaid: loyalty books nothing
    second = await buyer(shop, "pts-2", name="乙", status="created")
    changes = [(first, 100), (second, 7), (first, 250), (second, 0), (first, 40)]
    for customer, balance in changes:
        change = {"customer_id": customer, "delta": 1, "kind": "adjust", "reference": f"t:{balance}"}
        await _publish(
            stack,
            Topic.LOYALTY,
            EventEnvelope(
                type="loyalty.points_changed",
                shop_id=shop.shop_id,
                producer="test",
                payload={**change, "pending_delta": 0, "balance": balance, "pending": 0},
            ),
        )
    db = Database(stack["messaging"].settings)
    try:

        async def settled() -> None:
            async with db.transaction() as session:
                rows = await session.execute(
                    text("SELECT customer_id, points FROM messaging.contacts WHERE shop_id = :s"),
                    {"s": shop.shop_id},
                )
                assert dict(rows.all()) == {first: 40, second: 0}

        await eventually(settled, within=20)
    finally:
        await db.dispose()
