"""Feedback tickets, and the automations that wait on the calendar: 疑难件 and birthdays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
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
