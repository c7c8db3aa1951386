"""An automation's in-app message is sent in the transaction that queues it, under every check a
dispatcher applies: opt-outs suppress it, marketing in quiet hours stays queued until they end, and what
must wait (a delay, another channel) is left to the dispatcher.

The database is the test's own (`isolated`): no dispatcher runs on it, so whatever is `sent` here was
sent by the queueing transaction itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from laoke.kit import clock
from laoke.kit.db import Database
from laoke.testing.plugin import Isolated
from services.messaging import automations
from services.messaging.automations import Kind, Occurrence, Setting
from services.messaging.dispatcher import Sender
from tests.integration.messaging.helpers import isolated_settings

SHOP = "shp_inapp_now_0001"
# 22:00 in Shanghai: inside the default quiet hours (21:00–09:00), which end at 01:00 UTC the next day.
EVENING = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


@pytest.fixture
async def db(isolated: Isolated) -> AsyncIterator[Database]:
    settings = isolated_settings(isolated)
    database = Database(settings)
    async with database.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO messaging.shops (shop_id, name, timezone) "
                "VALUES (:s, '老客小店', 'Asia/Shanghai')"
            ),
            {"s": SHOP},
        )
        await session.execute(
            text(
                "INSERT INTO messaging.templates (shop_id, id, name, channel, body) VALUES "
                "(:s, 'tpl_ship', '发货', 'inapp', '{{name}}，您的订单{{order_id}}已发货'), "
                "(:s, 'tpl_back', '回来', 'inapp', '{{name}}，{{shop_name}}想你了'), "
                "(:s, 'tpl_sms', '发货', 'sms', '订单{{order_id}}已发货')"
            ),
            {"s": SHOP},
        )
        await session.execute(
            text(
                "INSERT INTO messaging.contacts (shop_id, customer_id, name, mobile) VALUES "
                "(:s, 'cus_a', '王小明', '13900000001'), (:s, 'cus_b', '李四', '13900000002')"
            ),
            {"s": SHOP},
        )
        await session.execute(
            text(
                "INSERT INTO messaging.consents (shop_id, customer_id, channel, subscribed, source) "
                "VALUES (:s, 'cus_b', 'inapp', false, 'api')"
            ),
            {"s": SHOP},
        )
    clock.travel(EVENING)
    try:
        yield database
    finally:
        clock.reset()
        await database.dispose()


def _setting(kind: Kind, channel: str, template: str, delay: int = 0) -> Setting:
    return Setting(SHOP, kind.value, channel, template, delay, None)


async def test_inapp_automation_messages_are_sent_as_they_are_queued(
    db: Database, isolated: Isolated
) -> None:
    notice = _setting(Kind.SHIPMENT_NOTICE, "inapp", "tpl_ship")
    winback = _setting(Kind.WINBACK, "inapp", "tpl_back")
    sms_notice = _setting(Kind.SHIPMENT_NOTICE, "sms", "tpl_sms")
    later = clock.now() + timedelta(minutes=30)
    occurrences = [
        Occurrence(notice, "cus_a", "ord_1", order_id="ord_1", variables={"order_id": "TB-1"}),
        Occurrence(notice, "cus_b", "ord_2", order_id="ord_2", variables={"order_id": "TB-2"}),
        Occurrence(winback, "cus_a", "cus_a:20261206"),
        Occurrence(sms_notice, "cus_a", "ord_1", order_id="ord_1", variables={"order_id": "TB-1"}),
        Occurrence(
            notice, "cus_a", "ord_3", not_before=later, order_id="ord_3", variables={"order_id": "TB-3"}
        ),
    ]
    sender = Sender(isolated_settings(isolated))
    async with db.transaction() as session:
        new = await automations.queue_many(session, sender, occurrences)
        assert new == {
            "shipment_notice:ord_1",  # in-app and SMS
            "shipment_notice:ord_2",
            "shipment_notice:ord_3",
            "winback:cus_a:20261206",
        }
        rows = (
            await session.execute(
                text(
                    "SELECT source, channel, customer_id, status, reason, body, sent_at, not_before, "
                    "deferred FROM messaging.messages ORDER BY source, channel, customer_id"
                )
            )
        ).all()
    found = {(r.source, r.channel, r.customer_id): r for r in rows}
    assert len(found) == 5

    sent = found[("shipment_notice:ord_1", "inapp", "cus_a")]
    assert (sent.status, sent.reason, sent.body) == ("sent", None, "王小明，您的订单TB-1已发货")
    assert sent.sent_at is not None and abs(sent.sent_at - EVENING) < timedelta(minutes=1)

    opted_out = found[("shipment_notice:ord_2", "inapp", "cus_b")]
    assert (opted_out.status, opted_out.reason, opted_out.body) == ("suppressed", "opted out of inapp", None)

    # Marketing at 22:00 shop time waits for the end of quiet hours (09:00 = 01:00 UTC), not dropped.
    quiet = found[("winback:cus_a:20261206", "inapp", "cus_a")]
    assert (quiet.status, quiet.deferred, quiet.body) == ("queued", True, None)
    assert quiet.not_before == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)

    # An SMS goes through a vendor, after commit: the dispatcher's. A delayed message waits for it too.
    assert found[("shipment_notice:ord_1", "sms", "cus_a")].status == "queued"
    delayed = found[("shipment_notice:ord_3", "inapp", "cus_a")]
    assert (delayed.status, delayed.not_before) == ("queued", later)

    # The same occurrences again (a redelivered event): nothing new, nothing sent twice.
    async with db.transaction() as session:
        assert await automations.queue_many(session, sender, occurrences) == set()
        count = await session.scalar(text("SELECT count(*) FROM messaging.messages WHERE status = 'sent'"))
    assert count == 1
