"""PII canary: a canary phone number, e-mail address and birthday go in through every door (the order API,
behaviour events, a history import, a profile edit, a refused order, an e-mail and an SMS campaign),
and then every log line the whole stack wrote meanwhile and every dead-letter topic are searched:
none of them may hold a canary unmasked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer

from laoke.contracts.topics import ALL_TOPICS
from laoke.testing.infra import Infra, eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.messaging.helpers import (
    NO_QUIET_HOURS,
    buyer,
    call,
    configure_sms,
    ok,
    template,
)

PHONE = "13987650123"
EMAIL = "canary.buyer@pii-canary.example"
BIRTHDAY = "1987-06-05"
CANARIES = (PHONE, EMAIL, "canary.buyer", BIRTHDAY)


async def dead_letters(bootstrap_servers: str) -> list[bytes]:
    topics = [t for t in ALL_TOPICS if t.endswith(".dlq")]
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=2000)
        return [record.value or b"" for records in batches.values() for record in records]
    finally:
        await consumer.stop()


async def test_no_canary_appears_unmasked_in_logs_or_dead_letters(
    shop: ShopClient, stack: ServerSet, infra: Infra, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC).isoformat()
    customer = await buyer(shop, "canary-1", mobile=PHONE, email=EMAIL, name="金丝雀", placed_at=now)
    events = [
        {
            "type": "favorite_shop",
            "channel": "taobao",
            "buyer": {"email": EMAIL, "mobile": PHONE},
            "occurred_at": now,
        }
    ]
    await ok(shop, "POST", "/api/v1/events", {"events": events}, 202)
    refused = await call(
        shop,
        "POST",
        "/api/v1/orders",
        {
            "order_id": "C-bad",
            "status": "paid",
            "buyer": {"external_id": "x", "mobile": PHONE, "email": EMAIL},
            "total_amount": "-1",
            "placed_at": now,
        },
    )
    assert refused.status_code == 422
    csv = (
        "order_id,buyer_id,mobile,email,status,total_amount,placed_at\n"
        f"CI-1,canary-import,{PHONE},{EMAIL},completed,10.00,{now}\n"
        f"CI-2,canary-import,{PHONE},{EMAIL},completed,-10.00,{now}\n"
    )
    imported = await shop.client.post(
        "/api/v1/imports", files={"file": ("canary.csv", csv.encode(), "text/csv")}, headers=shop.headers()
    )
    assert imported.status_code == 202, imported.text

    async def profiled() -> None:
        assert (await call(shop, "GET", f"/api/v1/customers/{customer}")).status_code == 200

    await eventually(profiled, within=20)
    await call(shop, "GET", f"/api/v1/loyalty/members/{customer}")
    await ok(
        shop,
        "PATCH",
        f"/api/v1/customers/{customer}",
        {"birthday": BIRTHDAY, "mobile": PHONE, "email": EMAIL},
    )

    # An e-mail and an SMS campaign to the canary: vendors see the contact, our logs must not.
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await ok(
        shop,
        "PUT",
        "/api/v1/messaging/channels/email",
        {"enabled": True, "from_address": "shop@laoke.example"},
    )
    await configure_sms(shop)
    segment = await ok(
        shop,
        "POST",
        "/api/v1/segments",
        {"name": "canary", "rule": {"field": "orders_count", "op": "gte", "value": 1}},
        201,
    )
    for channel, body in (("email", "{{ name }}，您好"), ("sms", "{{ name }}，您好")):
        tpl = await template(shop, channel, body, subject="你好" if channel == "email" else None)
        campaign = await ok(
            shop,
            "POST",
            "/api/v1/campaigns",
            {
                "name": f"canary {channel}",
                "segment_id": segment["id"],
                "channel": channel,
                "template_id": tpl,
            },
            201,
        )
        launched = await call(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/launch")
        assert launched.status_code in (200, 201, 202), launched.text

    async def delivered() -> None:
        sent = {
            m["channel"]
            for m in (await ok(shop, "GET", "/api/v1/messaging/messages"))["items"]
            if m["status"] in ("sent", "delivered")
        }
        assert {"email", "sms"} <= sent, sent

    await eventually(delivered, within=30)
    await asyncio.sleep(1)  # the consumers' and relays' last lines
    logs = "\n".join(capsys.readouterr())
    # Every component's lines were captured while the canary went through (the search is not vacuous).
    for service in ("gateway", "ingest", "segmentation", "loyalty", "messaging"):
        assert f'"service":"{service}"' in logs, f"no log line of {service} was captured"
    found = [c for c in CANARIES if c in logs]
    if found:
        lines = [line[:300] for line in logs.splitlines() if any(c in line for c in found)]
        pytest.fail(f"unmasked in the logs: {found}\n" + "\n".join(lines[:10]))
    leaked = [
        record[:300]
        for record in await dead_letters(infra.bootstrap_servers)
        if any(c.encode() in record for c in CANARIES)
    ]
    assert leaked == [], leaked
