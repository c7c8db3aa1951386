"""A dispatcher killed in the middle of sending: restarted, every buyer still gets exactly one SMS,
through Aliyun (looked up by `QuerySendDetails`) and through Tencent Cloud (`PullSmsSendStatusByPhoneNumber`).

The dispatcher runs here on a database of its own (the `isolated` fixture) so that nothing else claims
its messages; the vendor is the stack's local Aliyun endpoint. The crash is a failpoint that raises
`FailpointCrash` (a BaseException nothing catches), at either side of the vendor call.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from laoke.devstack.providers import (
    LOCAL_ACCESS_KEY_ID,
    LOCAL_ACCESS_KEY_SECRET,
    LOCAL_TENCENT_SECRET_ID,
    LOCAL_TENCENT_SECRET_KEY,
)
from laoke.kit import clock, failpoints
from laoke.kit.db import Database
from laoke.testing.plugin import Isolated
from laoke.testing.servers import ServerSet
from services.messaging.dispatcher import Dispatcher
from services.messaging.settings import MessagingSettings
from tests.integration.messaging.helpers import isolated_settings

SHOP = "shp_crash_test_0001"


VENDORS = {
    "aliyun": {
        "provider": "aliyun",
        "access_key_id": LOCAL_ACCESS_KEY_ID,
        "access_key_secret": LOCAL_ACCESS_KEY_SECRET,
        "region": "cn-hangzhou",
    },
    "tencent": {
        "provider": "tencent",
        "access_key_id": LOCAL_TENCENT_SECRET_ID,
        "access_key_secret": LOCAL_TENCENT_SECRET_KEY,
        "sdk_app_id": "1400000001",
    },
}


@pytest.fixture(params=sorted(VENDORS))
async def queued(
    request: pytest.FixtureRequest, isolated: Isolated, stack: ServerSet
) -> AsyncIterator[MessagingSettings]:
    vendor = VENDORS[request.param] | {"sign_name": "老客小店", "rate_per_second": 1000}
    settings = isolated_settings(
        isolated,
        aliyun_sms_endpoint=stack.providers_url + "/",
        tencent_sms_endpoint=stack.providers_url + "/tencent",
        internal_secret=stack["messaging"].settings.internal_secret,
        dispatch_batch=1000,
    )
    db = Database(settings)
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO messaging.channel_configs (shop_id, channel, enabled, settings) "
                "VALUES (:shop, 'sms', true, CAST(:settings AS jsonb))"
            ),
            {"shop": SHOP, "settings": json.dumps(vendor, ensure_ascii=False)},
        )
        await session.execute(
            text(
                "INSERT INTO messaging.templates (shop_id, id, name, channel, body) "
                "VALUES (:shop, 'tpl_crash', '通知', 'sms', '{{name}}您好')"
            ),
            {"shop": SHOP},
        )
        await session.execute(
            text(
                "INSERT INTO messaging.messages (shop_id, source, customer_id, channel, marketing, "
                "template_id, recipient, variables) "
                "SELECT :shop, 'campaign:cmp_crash', 'cus_' || n, 'sms', false, "
                "'tpl_crash', '1350000' || lpad(n::text, 4, '0'), jsonb_build_object('name', '顾客' || n) "
                "FROM generate_series(1, 250) n"
            ),
            {"shop": SHOP},
        )
    await db.dispose()
    try:
        yield settings
    finally:
        clock.reset()
        for name in ("crashy.before_vendor_calls", "crashy.after_vendor_calls"):
            failpoints.disarm(name)


async def _statuses(settings: MessagingSettings) -> Counter[str]:
    db = Database(settings)
    try:
        async with db.transaction() as session:
            rows = await session.execute(
                text("SELECT status, count(*) FROM messaging.messages GROUP BY status")
            )
            return Counter({status: int(n) for status, n in rows})
    finally:
        await db.dispose()


@pytest.mark.parametrize("where", ["before_vendor_calls", "after_vendor_calls"])
async def test_a_crash_mid_send_ends_with_exactly_one_sms_per_buyer(
    queued: MessagingSettings, stack: ServerSet, where: str
) -> None:
    phones = {f"1350000{n:04d}" for n in range(1, 251)}
    already = Counter(s["phone"] for s in stack.providers.sms if s["phone"] in phones)
    crashy = Dispatcher(Database(queued), queued, name="crashy")
    failpoints.arm(f"crashy.{where}")
    with pytest.raises(failpoints.FailpointCrash):
        await crashy.cycle()
    await crashy.db.dispose()
    assert await _statuses(queued) == Counter({"sending": 250})

    # The restarted process: nothing happens until the lease runs out, then recovery settles the rows.
    restarted = Dispatcher(Database(queued), queued, name="restarted")
    try:
        assert await restarted.recover() == 0
        clock.travel(clock.now() + restarted.lease + timedelta(seconds=1))
        assert await restarted.recover() == 250
        while await restarted.cycle():
            pass
    finally:
        await restarted.db.dispose()
        await restarted.http.aclose()
    assert await _statuses(queued) == Counter({"sent": 250})
    received = Counter(s["phone"] for s in stack.providers.sms if s["phone"] in phones) - already
    assert set(received) == phones and set(received.values()) == {1}
