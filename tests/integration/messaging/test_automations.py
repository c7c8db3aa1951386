"""Automations driven by real order events: 催付, shipment notice and welcome, each once per occurrence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from laoke.contracts.orders import OrderStatus
from laoke.kit.db import Database
from laoke.testing.factories import order_payload
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from services.messaging.dispatcher import Sender
from services.messaging.handlers import absorb_orders
from tests.integration.messaging.helpers import NO_QUIET_HOURS, buyer, configure_sms, messages, ok, template


def _ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def _automation(shop: ShopClient, kind: str, channel: str, body: str, **extra: object) -> None:
    tpl = await template(shop, channel, body)
    await ok(shop, "PUT", f"/api/v1/automations/{kind}", {"channel": channel, "template_id": tpl, **extra})


async def test_unpaid_reminder_is_sent_once_when_still_unpaid_and_cancelled_on_payment(
    shop: ShopClient, stack: ServerSet
) -> None:
    await configure_sms(shop)
    await _automation(
        shop, "unpaid_reminder", "sms", "{{name}}，订单{{order_id}}还未付款哦", delay_minutes=30
    )

    # Placed 31 minutes ago and still unpaid: due now. A redelivered order event adds nothing.
    late = await buyer(
        shop, "u-late", mobile="13900000001", status="created", placed_at=_ago(31), order_id="UNPAID-1"
    )
    await buyer(
        shop, "u-late", mobile="13900000001", status="created", placed_at=_ago(31), order_id="UNPAID-1"
    )

    async def reminded() -> None:
        sent = await messages(shop, customer_id=late)
        assert [m["status"] for m in sent] == ["sent"]
        assert sent[0]["source"].startswith("unpaid_reminder:ord_")
        assert sent[0]["body"] == "王小明，订单UNPAID-1还未付款哦"

    await eventually(reminded, within=20)
    # Aliyun's records carry the template variables by name (Tencent's, from other tests, by position).
    reminders = [
        s
        for s in stack.providers.sms
        if s["provider"] == "aliyun" and s["params"].get("order_id") == "UNPAID-1"
    ]
    assert [s["phone"] for s in reminders] == ["13900000001"]

    # Placed just now: waits 30 minutes; paid meanwhile, the reminder is cancelled and never sent.
    paid = await buyer(
        shop, "u-paid", mobile="13900000002", status="created", placed_at=_ago(1), order_id="UNPAID-2"
    )

    async def waiting() -> None:
        assert [m["status"] for m in await messages(shop, customer_id=paid)] == ["queued"]

    await eventually(waiting, within=20)
    await buyer(
        shop,
        "u-paid",
        mobile="13900000002",
        status="paid",
        placed_at=_ago(1),
        paid_at=_ago(0),
        order_id="UNPAID-2",
    )

    async def cancelled() -> None:
        found = await messages(shop, customer_id=paid)
        assert [(m["status"], m["reason"]) for m in found] == [("cancelled", "order is paid now")]

    await eventually(cancelled, within=20)


async def test_shipment_notice_and_welcome_follow_the_order(shop: ShopClient) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await _automation(shop, "shipment_notice", "inapp", "您的订单{{order_id}}已发货")
    await _automation(shop, "welcome", "inapp", "欢迎{{name}}成为{{shop_name}}的会员")
    customer = await buyer(shop, "ship-1", name="赵六", status="paid", order_id="SHIP-1", paid_at=_ago(60))
    await buyer(
        shop, "ship-1", name="赵六", status="shipped", order_id="SHIP-1", paid_at=_ago(60), shipped_at=_ago(1)
    )
    # A second order is no longer a first order: no second welcome.
    await buyer(shop, "ship-1", name="赵六", status="paid", order_id="SHIP-2", paid_at=_ago(0))

    async def inbox() -> None:
        page = await ok(shop, "GET", f"/api/v1/inbox/{customer}")
        assert sorted(m["body"] for m in page["items"]) == [
            "您的订单SHIP-1已发货",
            "欢迎赵六成为测试小店的会员",
        ]

    await eventually(inbox, within=20)
    listed = {a["kind"]: a for a in (await ok(shop, "GET", "/api/v1/automations"))["items"]}
    assert listed["shipment_notice"]["enabled"] and listed["shipment_notice"]["sent"] == 1
    assert listed["welcome"]["sent"] == 1
    assert not listed["birthday"]["enabled"] and listed["unpaid_reminder"]["delay_minutes"] == 30
    # An item read goes back changed (read, switch off, write), its read-only fields and all.
    off = listed["shipment_notice"] | {"enabled": False}
    assert not (await ok(shop, "PUT", "/api/v1/automations/shipment_notice", off))["enabled"]


async def test_automation_refuses_a_template_of_another_channel(shop: ShopClient) -> None:
    tpl = await template(shop, "inapp", "您好")
    response = await shop.client.put(
        "/api/v1/automations/winback", json={"channel": "sms", "template_id": tpl}, headers=shop.headers()
    )
    assert response.status_code == 422 and "is for inapp" in response.json()["detail"]
    unknown = await shop.client.put(
        "/api/v1/automations/nonsense", json={"channel": "sms", "template_id": tpl}, headers=shop.headers()
    )
    assert unknown.status_code == 422
    empty = await shop.client.put(
        "/api/v1/automations/winback", json={"channel": "sms", "template_id": ""}, headers=shop.headers()
    )
    assert empty.status_code == 422 and "template_id: String should have at least 1 character" in empty.text


async def test_a_first_order_paid_and_shipped_in_one_run_still_welcomes_and_notifies(
    shop: ShopClient, stack: ServerSet
) -> None:
    """A consumer run keeps each order's newest state; the automations look at every state the order
    passed through in the run, as if its events had come one by one (a first order's `paid` and
    `shipped` fetched together had lost the buyer's welcome)."""
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await _automation(shop, "shipment_notice", "inapp", "您的订单{{order_id}}已发货")
    await _automation(shop, "welcome", "inapp", "欢迎成为{{shop_name}}的会员")
    customer = "cus_one_run_buyer"
    settings = stack["messaging"].settings
    db = Database(settings)
    sender = Sender(settings)
    try:
        async with db.transaction() as session:
            run = [
                order_payload("ord_one_run", customer, OrderStatus.PAID, 1, 5_000),
                order_payload("ord_one_run", customer, OrderStatus.SHIPPED, 2, 5_000),
            ]
            await absorb_orders(session, sender, shop.shop_id, [(o, customer) for o in run])
    finally:
        await sender.aclose()
        await db.dispose()
    page = await ok(shop, "GET", f"/api/v1/inbox/{customer}")
    assert sorted(m["body"] for m in page["items"]) == ["您的订单ORD_ONE_RUN已发货", "欢迎成为测试小店的会员"]
