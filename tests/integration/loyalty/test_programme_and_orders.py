"""The programme, and points from orders: pending → release, proportional refunds, late events, tiers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.loyalty import TIER_CHANGED
from laoke.contracts.orders import OrderStatus
from laoke.contracts.topics import Topic
from laoke.testing.factories import order_json
from laoke.testing.infra import Infra, events_on, eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.loyalty.helpers import (
    T0,
    invariants_hold,
    ledger,
    member_reaches,
    order_event,
    publish,
    publish_on,
    set_program,
)

TIERS = [
    {"level": 1, "name": "普通会员", "discount": 100},
    {"level": 2, "name": "银卡", "min_spend": "500", "discount": 98},
    {"level": 3, "name": "金卡", "min_spend": "2000", "min_orders": 3, "discount": 95},
]


async def test_programme_is_validated_and_kept(shop: ShopClient, other_shop: ShopClient) -> None:
    default = await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())
    assert default.status_code == 200 and default.json()["credit_on"] == "completed"
    saved = await set_program(shop, earn_rate="2", tiers=TIERS, expiry={"mode": "rolling", "days": 365})
    assert saved["earn_rate"] == "2" and [t["name"] for t in saved["tiers"]] == ["普通会员", "银卡", "金卡"]
    again = await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())
    assert again.json() == saved
    assert (await other_shop.client.get("/api/v1/loyalty/program", headers=other_shop.headers())).json()[
        "earn_rate"
    ] == "1"

    bad_programmes = {
        "thresholds rise": {"tiers": [TIERS[0], {**TIERS[2], "level": 2}, {**TIERS[1], "level": 3}]},
        "discounts never rise": {"tiers": [TIERS[0], TIERS[1], {**TIERS[2], "discount": 99}]},
        "rolling expiry needs days": {"expiry": {"mode": "rolling"}},
        "unknown time zone": {"timezone": "Mars/Olympus"},
        "earn_rate": {"earn_rate": "-1"},
    }
    for expected, body in bad_programmes.items():
        refused = await shop.client.put("/api/v1/loyalty/program", json=body, headers=shop.headers())
        assert refused.status_code == 422 and expected in refused.text, (expected, refused.text)
    assert (await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())).json() == saved


async def test_paid_orders_pend_then_release_or_lapse(shop: ShopClient, stack: ServerSet) -> None:
    await set_program(shop, credit_on="paid")
    await publish(
        stack,
        order_event(shop.shop_id, "cus_pend", "ord_p1", OrderStatus.PAID, paid_fen=30_000, modified=T0),
        order_event(shop.shop_id, "cus_pend", "ord_p2", OrderStatus.PAID, paid_fen=5_000, modified=T0),
    )
    await member_reaches(shop, "cus_pend", points_pending=350, points_available=0)
    await publish(
        stack,
        order_event(
            shop.shop_id,
            "cus_pend",
            "ord_p1",
            OrderStatus.COMPLETED,
            paid_fen=30_000,
            modified=T0 + timedelta(days=3),
            completed=True,
        ),
        order_event(
            shop.shop_id,
            "cus_pend",
            "ord_p2",
            OrderStatus.CLOSED,
            paid_fen=5_000,
            modified=T0 + timedelta(hours=1),
        ),
    )
    await member_reaches(shop, "cus_pend", points_pending=0, points_available=300, lifetime_earned=300)
    kinds = [(e["kind"], e["points"], e["pending"]) for e in await ledger(shop, "cus_pend")]
    assert sorted(kinds) == sorted(
        [("pending", 0, 300), ("pending", 0, 50), ("release", 300, -300), ("reverse", 0, -50)]
    )
    await invariants_hold(stack, shop.shop_id)


async def test_refunds_reverse_proportionally_once(shop: ShopClient, stack: ServerSet) -> None:
    completed = order_event(
        shop.shop_id, "cus_ref", "ord_r1", OrderStatus.COMPLETED, paid_fen=30_000, modified=T0, completed=True
    )
    partial = order_event(
        shop.shop_id,
        "cus_ref",
        "ord_r1",
        OrderStatus.PARTIALLY_REFUNDED,
        paid_fen=30_000,
        refunded_fen=10_000,
        modified=T0 + timedelta(days=2),
        completed=True,
    )
    # The same refund, delivered ten times: once as the very same event, and as re-announcements.
    copies = [partial] * 5 + [partial.model_copy(update={"event_id": uuid.uuid4()}) for _ in range(5)]
    await publish(stack, completed, *copies)
    await member_reaches(shop, "cus_ref", points_available=200)
    entries = [(e["kind"], e["points"]) for e in await ledger(shop, "cus_ref")]
    assert entries == [("earn", 300), ("reverse", -100)]

    # The rest refunded after the points were partly spent: what is left is taken, the note says so.
    spent = await shop.client.post(
        "/api/v1/loyalty/members/cus_ref/adjustments",
        json={"points": -150, "reason": "兑换线下礼品"},
        headers=shop.headers(),
    )
    assert spent.status_code == 201, spent.text
    await publish(
        stack,
        order_event(
            shop.shop_id,
            "cus_ref",
            "ord_r1",
            OrderStatus.REFUNDED,
            paid_fen=30_000,
            refunded_fen=30_000,
            modified=T0 + timedelta(days=5),
            completed=True,
        ),
    )
    await member_reaches(shop, "cus_ref", points_available=0)
    last = (await ledger(shop, "cus_ref"))[-1]
    assert (last["kind"], last["points"]) == ("reverse", -50) and "150 points were already spent" in last[
        "note"
    ]
    await invariants_hold(stack, shop.shop_id)


async def test_an_earn_event_arriving_after_its_refund_changes_nothing(
    shop: ShopClient, stack: ServerSet
) -> None:
    refunded = order_event(
        shop.shop_id,
        "cus_late",
        "ord_l1",
        OrderStatus.PARTIALLY_REFUNDED,
        paid_fen=20_000,
        refunded_fen=5_000,
        modified=T0 + timedelta(days=2),
        completed=True,
    )
    earlier = order_event(
        shop.shop_id,
        "cus_late",
        "ord_l1",
        OrderStatus.COMPLETED,
        paid_fen=20_000,
        modified=T0,
        completed=True,
    )
    await publish(stack, refunded, earlier)
    body = await member_reaches(shop, "cus_late", points_available=150)
    assert body["lifetime_earned"] == 150
    assert [(e["kind"], e["points"]) for e in await ledger(shop, "cus_late")] == [("earn", 150)]


async def test_tiers_rise_with_spend_and_never_fall(shop: ShopClient, stack: ServerSet, infra: Infra) -> None:
    await set_program(shop, tiers=TIERS)
    day = T0 + timedelta(days=2)
    # Both orders at once: one partition, usually one run handled in one transaction, where the second
    # order must see the tier the first one granted (a lost update once showed up exactly here).
    await publish(
        stack,
        *(
            order_event(
                shop.shop_id,
                "cus_tier",
                f"ord_t{n}",
                OrderStatus.COMPLETED,
                paid_fen=30_000,
                modified=T0 + timedelta(days=n),
                completed=True,
            )
            for n in (1, 2)
        ),
    )
    body = await member_reaches(shop, "cus_tier", tier_level=2)
    assert (body["tier"], body["discount"], body["qualifying_spend"]) == ("银卡", 98, "600.00")
    assert body["next_tier"] == {"level": 3, "name": "金卡", "spend_needed": "1400.00", "orders_needed": 1}

    # A full refund of one order takes its spend away, but never the tier (never_downgrade by default).
    await publish(
        stack,
        order_event(
            shop.shop_id,
            "cus_tier",
            "ord_t2",
            OrderStatus.REFUNDED,
            paid_fen=30_000,
            refunded_fen=30_000,
            modified=day + timedelta(days=1),
            completed=True,
        ),
    )
    body = await member_reaches(shop, "cus_tier", points_available=300)
    assert body["tier_level"] == 2 and body["qualifying_spend"] == "300.00"

    async def profile_shows_tier() -> None:  # segmentation keeps a copy for lists and rules
        profile = await shop.client.get("/api/v1/customers/cus_tier", headers=shop.headers())
        assert profile.status_code == 200 and (profile.json()["tier"], profile.json()["tier_level"]) == (
            "银卡",
            2,
        )

    await eventually(profile_shows_tier, within=20)
    changes = await events_on(
        infra.bootstrap_servers, Topic.LOYALTY, shop.shop_id, 2, types=frozenset({TIER_CHANGED})
    )
    assert [(e.payload["from_level"], e.payload["to_level"]) for e in changes] == [(None, 1), (1, 2)]
    await invariants_hold(stack, shop.shop_id)


async def placement_done(stack: ServerSet, shop_id: str) -> None:
    engine = create_async_engine(stack["loyalty"].settings.database_url)
    try:

        async def done() -> None:
            async with engine.connect() as conn:
                left = await conn.scalar(
                    text("SELECT placed_after FROM loyalty.programs WHERE shop_id = :s"), {"s": shop_id}
                )
            assert left is None, left

        await eventually(done, within=20)
    finally:
        await engine.dispose()


async def test_tiers_set_up_after_the_orders_place_existing_members(
    shop: ShopClient, stack: ServerSet, infra: Infra
) -> None:
    await publish(
        stack,
        *(
            order_event(
                shop.shop_id,
                customer,
                f"ord_{customer}",
                OrderStatus.COMPLETED,
                paid_fen=paid_fen,
                modified=T0 + timedelta(days=1),
                completed=True,
            )
            for customer, paid_fen in (("cus_big", 250_000), ("cus_small", 10_000))
        ),
    )
    await member_reaches(shop, "cus_big", points_available=2500, tier_level=0)
    await member_reaches(shop, "cus_small", points_available=100, tier_level=0)

    placed = await shop.client.put("/api/v1/loyalty/program", json={"tiers": TIERS}, headers=shop.headers())
    assert placed.status_code == 200 and placed.headers["X-Laoke-Tier-Placement"] == "started", placed.text
    big = await member_reaches(shop, "cus_big", tier_level=2)  # 2,500 yuan in one order: not 金卡's 3 orders
    assert (big["tier"], big["next_tier"]) == (
        "银卡",
        {"level": 3, "name": "金卡", "spend_needed": "0.00", "orders_needed": 2},
    )
    await member_reaches(shop, "cus_small", tier_level=1, tier="普通会员")
    await placement_done(stack, shop.shop_id)

    # The same tiers again start nothing; raised thresholds take no tier away (never_downgrade).
    same = await shop.client.put("/api/v1/loyalty/program", json={"tiers": TIERS}, headers=shop.headers())
    assert same.status_code == 200 and "X-Laoke-Tier-Placement" not in same.headers
    raised = [TIERS[0], {**TIERS[1], "min_spend": "5000"}, {**TIERS[2], "min_spend": "9000"}]
    higher = await shop.client.put("/api/v1/loyalty/program", json={"tiers": raised}, headers=shop.headers())
    assert higher.headers["X-Laoke-Tier-Placement"] == "started"
    await placement_done(stack, shop.shop_id)
    assert (await member_reaches(shop, "cus_big", tier_level=2))["tier"] == "银卡"
    # Tiers taken away: nothing to place, and a placement under way stops.
    gone = await shop.client.put("/api/v1/loyalty/program", json={"tiers": []}, headers=shop.headers())
    assert gone.status_code == 200 and "X-Laoke-Tier-Placement" not in gone.headers
    await placement_done(stack, shop.shop_id)

    changes = await events_on(
        infra.bootstrap_servers, Topic.LOYALTY, shop.shop_id, 2, types=frozenset({TIER_CHANGED})
    )
    assert sorted(
        (e.payload["customer_id"], e.payload["to_level"], e.payload["tier_name"]) for e in changes
    ) == [
        ("cus_big", 2, "银卡"),
        ("cus_small", 1, "普通会员"),
    ]
    await invariants_hold(stack, shop.shop_id)


async def test_renamed_tiers_reach_the_customer_list_segments_and_messaging(
    shop: ShopClient, stack: ServerSet
) -> None:
    tiers = [
        {"level": 1, "name": "银卡"},
        {"level": 2, "name": "金卡", "min_spend": "10000"},
    ]
    await set_program(shop, tiers=tiers)
    body = order_json("RENAME-1", buyer="rename-buyer", total="100.00")
    placed = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
    customer = placed.json()["order"]["customer_id"]

    async def listed_as(tier: str) -> None:
        page = await shop.client.get("/api/v1/customers", params={"tier": tier}, headers=shop.headers())
        assert [c["customer_id"] for c in page.json()["items"]] == [customer], page.text

    await eventually(lambda: listed_as("银卡"), within=20)
    segment = await shop.client.post(
        "/api/v1/segments",
        json={"name": "白银会员", "rule": {"field": "tier", "op": "eq", "value": "白银会员"}},
        headers=shop.headers(),
    )
    assert segment.json()["size"] == 0

    # A draft campaign with a text per tier, waiting to be launched.
    texts = []
    for body_text in ("银卡专享", "大家好"):
        made = await shop.client.post(
            "/api/v1/templates",
            json={"name": body_text, "channel": "inapp", "body": body_text},
            headers=shop.headers(),
        )
        texts.append(made.json()["id"])
    draft = await shop.client.post(
        "/api/v1/campaigns",
        json={
            "name": "会员日",
            "segment_id": segment.json()["id"],
            "channel": "inapp",
            "variants_by_tier": {"银卡": texts[0], "*": texts[1]},
        },
        headers=shop.headers(),
    )
    assert draft.status_code == 201, draft.text

    # 银卡 is now 白银会员 (and 金卡 stays): nobody moves, every copy of the name follows.
    renamed = [{**tiers[0], "name": "白银会员"}, tiers[1]]
    saved = await shop.client.put("/api/v1/loyalty/program", json={"tiers": renamed}, headers=shop.headers())
    assert saved.status_code == 200 and "X-Laoke-Tier-Placement" not in saved.headers  # nobody to move
    await eventually(lambda: listed_as("白银会员"), within=20)

    async def segment_holds_them() -> None:
        got = await shop.client.get(f"/api/v1/segments/{segment.json()['id']}", headers=shop.headers())
        assert got.json()["size"] == 1, got.text

    await eventually(segment_holds_them, within=20)

    async def contact_renamed() -> None:
        tier = await stack.scalar(
            "messaging",
            "SELECT tier FROM messaging.contacts WHERE shop_id = :s AND customer_id = :c",
            s=shop.shop_id,
            c=customer,
        )
        assert tier == "白银会员", tier

    await eventually(contact_renamed, within=20)

    async def variants_renamed() -> None:
        got = await shop.client.get(f"/api/v1/campaigns/{draft.json()['id']}", headers=shop.headers())
        assert got.json()["variants_by_tier"] == {"白银会员": texts[0], "*": texts[1]}, got.text

    await eventually(variants_renamed, within=20)

    # A move published just before the rename, with the old name, consumed after it (the rename and the
    # moves travel on different partitions): the member keeps the new name everywhere.
    late = EventEnvelope(
        type=TIER_CHANGED,
        shop_id=shop.shop_id,
        producer="test",
        occurred_at=datetime.now(UTC) - timedelta(minutes=1),
        payload={"customer_id": customer, "from_level": None, "to_level": 1, "tier_name": "银卡"},
    )
    await publish_on(stack, Topic.LOYALTY, late)

    async def consumed() -> None:
        for service in ("segmentation", "messaging"):
            seen = await stack.scalar(
                service,
                f"SELECT count(*) FROM {service}.processed_events WHERE event_id = :e",  # noqa: S608 - two fixed schema names
                e=late.event_id,
            )
            assert seen == 1, service

    await eventually(consumed, within=20)
    await listed_as("白银会员")
    await contact_renamed()
