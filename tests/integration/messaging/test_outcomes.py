"""What campaigns bring in and carry: attribution against the holdout on a hand-computed example,
coupons issued by loyalty per recipient, and exactly one message per buyer with several replicas."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import UTC, datetime

from laoke.kit.db import Database
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from services.messaging.dispatcher import Dispatcher
from tests.integration.messaging.helpers import (
    NO_QUIET_HOURS,
    buyer,
    campaign_done,
    configure_sms,
    messages,
    ok,
    segment_of_everyone,
    template,
)


async def test_attribution_compares_targeted_buyers_with_the_holdout(shop: ShopClient) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    everyone = [await buyer(shop, f"attr-{i}", placed_at="2026-10-01T10:00:00+08:00") for i in range(10)]
    segment = await segment_of_everyone(shop, 10)
    tpl = await template(shop, "inapp", "回来看看")
    body = {
        "name": "回购",
        "segment_id": segment,
        "channel": "inapp",
        "template_id": tpl,
        "holdout_percent": 50,
    }
    campaign = (await ok(shop, "POST", "/api/v1/campaigns", body, 201))["id"]
    await ok(shop, "POST", f"/api/v1/campaigns/{campaign}/launch", status=202)
    done = await campaign_done(shop, campaign)
    assert (done["targeted"], done["holdout"], done["converted"], done["revenue"]) == (5, 5, 0, "0.00")
    targeted = sorted({m["customer_id"] for m in await messages(shop, campaign_id=campaign)})
    held = sorted(set(everyone) - set(targeted))

    # After the snapshot: two targeted buyers pay 100 and 50 (one of them twice: counted once, both
    # orders' revenue), one held-out buyer pays 30.
    now = datetime.now(UTC).isoformat()
    index = {c: everyone.index(c) for c in everyone}
    paid = [(targeted[0], "100.00"), (targeted[1], "30.00"), (targeted[1], "20.00"), (held[0], "30.00")]
    for n, (customer, total) in enumerate(paid):
        await buyer(
            shop,
            f"attr-{index[customer]}",
            status="paid",
            order_id=f"ATTR-NEW-{n}",
            total=total,
            placed_at=now,
            paid_at=now,
        )

    async def attributed() -> dict[str, object]:
        report = await ok(shop, "GET", f"/api/v1/campaigns/{campaign}")
        assert (report["converted"], report["revenue"], report["holdout_converted"]) == (2, "150.00", 1), (
            report
        )
        return dict(report)

    report = await eventually(attributed, within=20)
    lift = report["attribution"]
    assert isinstance(lift, dict)
    spread = 1.96 * math.sqrt(0.4 * 0.6 / 5 + 0.2 * 0.8 / 5)  # 0.5544
    assert lift["conversion_rate"] == 0.4 and lift["holdout_conversion_rate"] == 0.2
    assert math.isclose(lift["lift"], 0.2)
    assert math.isclose(lift["ci95_low"], 0.2 - spread) and math.isclose(lift["ci95_high"], 0.2 + spread)


async def test_campaign_coupons_are_issued_by_loyalty_one_per_recipient(shop: ShopClient) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    customers = [await buyer(shop, f"cpn-{i}") for i in range(3)]
    for customer in customers:  # loyalty knows them as members once it has seen their orders

        async def member(customer: str = customer) -> None:
            assert (
                await shop.client.get(f"/api/v1/loyalty/members/{customer}", headers=shop.headers())
            ).status_code == 200

        await eventually(member, within=20)
    coupon = await ok(
        shop,
        "POST",
        "/api/v1/coupons/templates",
        {"name": "10元无门槛", "kind": "no_threshold", "amount": "10"},
        201,
    )
    segment = await segment_of_everyone(shop, 3)
    tpl = await template(shop, "inapp", "送您一张券：{{coupon_code}}")
    body = {
        "name": "送券",
        "segment_id": segment,
        "channel": "inapp",
        "template_id": tpl,
        "coupon_template_id": coupon["id"],
    }
    campaign = (await ok(shop, "POST", "/api/v1/campaigns", body, 201))["id"]
    await ok(shop, "POST", f"/api/v1/campaigns/{campaign}/launch", status=202)
    assert (await campaign_done(shop, campaign))["sent"] == 3
    for customer in customers:
        inbox = await ok(shop, "GET", f"/api/v1/inbox/{customer}")
        code = inbox["items"][0]["body"].removeprefix("送您一张券：")
        held = await ok(shop, "GET", f"/api/v1/loyalty/members/{customer}/coupons")
        assert [c["code"] for c in held["items"]] == [code]
    assert (await ok(shop, "GET", f"/api/v1/coupons/templates/{coupon['id']}"))["issued"] == 3


async def test_three_dispatchers_send_each_buyer_exactly_one_sms(shop: ShopClient, stack: ServerSet) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await configure_sms(shop)
    phones = [f"1360000{i:04d}" for i in range(250)]
    await asyncio.gather(*(buyer(shop, f"rep-{i}", mobile=p) for i, p in enumerate(phones)))
    segment = await segment_of_everyone(shop, 250)
    tpl = await template(shop, "sms", "{{name}}您好")
    # Two more replicas of the dispatcher next to the service's own, each with its own connections.
    settings = stack["messaging"].settings.model_copy(update={"dispatch_batch": 40})
    replicas = [Dispatcher(Database(settings), settings) for _ in range(2)]
    stop = asyncio.Event()
    loops = [asyncio.create_task(r.run(stop)) for r in replicas]
    try:
        body = {"name": "三副本", "segment_id": segment, "channel": "sms", "template_id": tpl}
        campaign = (await ok(shop, "POST", "/api/v1/campaigns", body, 201))["id"]
        await ok(shop, "POST", f"/api/v1/campaigns/{campaign}/launch", status=202)
        assert (await campaign_done(shop, campaign))["sent"] == 250
    finally:
        stop.set()
        await asyncio.gather(*loops)
        for replica in replicas:
            await replica.db.dispose()
    received = Counter(s["phone"] for s in stack.providers.sms if s["phone"] in set(phones))
    assert set(received) == set(phones) and set(received.values()) == {1}
