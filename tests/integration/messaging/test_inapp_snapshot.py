"""An in-app campaign is sent by its snapshot's own statement; every buyer must end exactly as the
dispatcher would have sent them. The same audience goes out twice: once at the snapshot (daytime), once
queued (the snapshot falls in quiet hours) and sent by a dispatcher after them. Each buyer's outcome,
reason, text and template must match, over the cases the SQL renders itself: tier variants, a name or
points the audience lacks and the contact knows, no name anywhere, an opt-out, the frequency cap, and a
variable nobody knows.

The database is the test's own (`isolated`): only the dispatcher made here sends from it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.db import Database
from laoke.testing.plugin import Isolated
from services.messaging import campaigns
from services.messaging.dispatcher import Dispatcher
from services.messaging.models import Campaign
from services.messaging.settings import MessagingSettings
from tests.integration.messaging.helpers import isolated_settings

SHOP = "shp_inapp_snap_0001"
NOON = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
EVENING = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)  # 22:00: quiet hours until 09:00 (01:00 UTC)
MORNING = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)

# customer, name, tier, points (the audience row as segmentation sends it)
AUDIENCE = [
    ("cus_gold", "金卡王", "黄金会员", 1200),
    ("cus_contact_name", None, "白银会员", 300),  # the contact knows the name
    ("cus_nameless", None, "白银会员", 10),  # nobody knows it: 顾客
    ("cus_contact_points", "赵六", "白银会员", None),  # the contact knows the points
    ("cus_no_points", "钱七", "白银会员", None),  # nobody does: the text cannot render
    ("cus_opted_out", "孙八", "黄金会员", 5),
    ("cus_capped", "周九", "白银会员", 7),
]
CONTACTS = [("cus_contact_name", "联系人甲", None), ("cus_contact_points", None, 55)]


@pytest.fixture
async def settings(isolated: Isolated) -> AsyncIterator[MessagingSettings]:
    settings = isolated_settings(isolated)
    db = Database(settings)
    async with db.transaction() as session:
        await _seed(session)
    await db.dispose()
    try:
        yield settings
    finally:
        clock.reset()


async def _seed(session: AsyncSession) -> None:
    shop = {"s": SHOP}
    await session.execute(
        text(
            "INSERT INTO messaging.shops (shop_id, name, timezone) VALUES (:s, '老客小店', 'Asia/Shanghai')"
        ),
        shop,
    )
    await session.execute(
        text(
            "INSERT INTO messaging.templates (shop_id, id, name, channel, body) VALUES "
            "(:s, 'tpl_gold', '金卡', 'inapp', '{{name}}，{{tier}}专享，{{shop_name}}敬上'), "
            "(:s, 'tpl_rest', '其他', 'inapp', '{{name}}您好，您有{{points}}积分')"
        ),
        shop,
    )
    for customer, name, points in CONTACTS:
        await session.execute(
            text(
                "INSERT INTO messaging.contacts (shop_id, customer_id, name, points) VALUES (:s, :c, :n, :p)"
            ),
            shop | {"c": customer, "n": name, "p": points},
        )
    await session.execute(
        text(
            "INSERT INTO messaging.consents (shop_id, customer_id, channel, subscribed, source) "
            "VALUES (:s, 'cus_opted_out', 'inapp', false, 'api')"
        ),
        shop,
    )
    # Three marketing messages in the last week: the default cap (3 in 7 days) is reached.
    await session.execute(
        text(
            "INSERT INTO messaging.messages (shop_id, source, customer_id, channel, marketing, template_id, "
            "status, recipient, variables, sent_at) SELECT :s, 'campaign:old' || n, 'cus_capped', 'sms', "
            "true, 'tpl_rest', 'sent', '13900000009', '{}', "
            "CAST(:at AS timestamptz) - make_interval(days => n) FROM generate_series(1, 3) n"
        ),
        shop | {"at": NOON},
    )
    for campaign_id in ("cmp_now", "cmp_queued"):
        session.add(
            Campaign(
                shop_id=SHOP,
                id=campaign_id,
                name=campaign_id,
                segment_id="seg_x",
                channel="inapp",
                template_id="tpl_rest",
                variants_by_tier={"黄金会员": "tpl_gold"},
                holdout_percent=0,
                attribution_days=7,
                status="scheduled",
            )
        )


async def _snapshot(settings: MessagingSettings, campaign_id: str, at: datetime) -> str:
    clock.travel(at)
    db = Database(settings)
    try:
        async with db.transaction() as session:
            await session.execute(
                text(
                    "CREATE TEMP TABLE audience (customer_id text, name text, mobile text, email text, "
                    "tier text, points bigint) ON COMMIT DROP"
                )
            )
            for customer, name, tier, points in AUDIENCE:
                await session.execute(
                    text("INSERT INTO audience VALUES (:c, :n, NULL, NULL, :t, :p)"),
                    {"c": customer, "n": name, "t": tier, "p": points},
                )
            campaign = await session.get(Campaign, (SHOP, campaign_id))
            assert campaign is not None
            await campaigns.snapshot(session, campaign, clock.now())
            return campaign.status
    finally:
        await db.dispose()


async def _outcomes(settings: MessagingSettings, campaign_id: str) -> dict[str, tuple[object, ...]]:
    db = Database(settings)
    try:
        async with db.transaction() as session:
            rows = await session.execute(
                text(
                    "SELECT customer_id, status, reason, template_id, subject, body, attempts "
                    "FROM messaging.messages WHERE shop_id = :s AND campaign_id = :c"
                ),
                {"s": SHOP, "c": campaign_id},
            )
            return {r[0]: tuple(r[1:]) for r in rows}
    finally:
        await db.dispose()


async def test_an_inapp_campaign_sent_at_its_snapshot_ends_as_the_dispatcher_would_send_it(
    settings: MessagingSettings,
) -> None:
    # At noon nothing needs the dispatcher: the snapshot sends, and the campaign is complete at once.
    assert await _snapshot(settings, "cmp_now", NOON) == "completed"
    at_snapshot = await _outcomes(settings, "cmp_now")

    # In quiet hours the messages are queued; a dispatcher sends them once the quiet hours are over.
    assert await _snapshot(settings, "cmp_queued", EVENING) == "sending"
    queued = await _outcomes(settings, "cmp_queued")
    assert {status for status, *_ in queued.values()} == {"queued"}
    clock.travel(MORNING)
    dispatcher = Dispatcher(Database(settings), settings)
    try:
        while await dispatcher.cycle():
            pass
    finally:
        await dispatcher.db.dispose()
        await dispatcher.aclose()
    by_dispatcher = await _outcomes(settings, "cmp_queued")

    assert at_snapshot == by_dispatcher
    undefined = "template does not render: 'points' is undefined"
    assert at_snapshot == {
        "cus_gold": ("sent", None, "tpl_gold", None, "金卡王，黄金会员专享，老客小店敬上", 1),
        "cus_contact_name": ("sent", None, "tpl_rest", None, "联系人甲您好，您有300积分", 1),
        "cus_nameless": ("sent", None, "tpl_rest", None, "顾客您好，您有10积分", 1),
        "cus_contact_points": ("sent", None, "tpl_rest", None, "赵六您好，您有55积分", 1),
        "cus_no_points": ("failed", undefined, "tpl_rest", None, None, 1),
        "cus_opted_out": ("suppressed", "opted out of inapp", "tpl_gold", None, None, 0),
        "cus_capped": ("suppressed", "frequency cap: 3 in 7 days", "tpl_rest", None, None, 0),
    }


async def test_a_campaign_the_snapshot_cannot_render_is_left_to_the_dispatcher(
    settings: MessagingSettings,
) -> None:
    # A coupon code comes from loyalty per recipient: only the dispatcher can fill it.
    db = Database(settings)
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE messaging.templates SET body = '{{name}}，您的券码{{coupon_code}}' "
                "WHERE shop_id = :s AND id = 'tpl_rest'"
            ),
            {"s": SHOP},
        )
    await db.dispose()
    assert await _snapshot(settings, "cmp_now", NOON) == "sending"
    outcomes = await _outcomes(settings, "cmp_now")
    assert {customer for customer, (status, *_) in outcomes.items() if status == "queued"} == {
        c for c, *_ in AUDIENCE
    }
    assert clock.now() - NOON < timedelta(minutes=1)
