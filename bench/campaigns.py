"""Campaign throughput: a segment of a million buyers messaged in-app, and a smaller one by SMS through
the local Aliyun endpoint in batches of 100.

Profiles are seeded straight into segmentation's table (name, mobile, tier, points); the segment is
created through the API, so segmentation computes its membership itself. Each campaign is created and
launched through the gateway and timed from launch until every message is settled: the audience
snapshot (segment → messaging through the internal feed), the holdout, the consent / cap / quiet-hour
checks and the hand-off to the channel. Targets (issue 6): in-app ≥ 20,000 messages/s; SMS in batches
of 100 to the local endpoint ≥ 5,000 messages/s.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text

from bench.common import BenchContext, write_result
from laoke.devstack.providers import LOCAL_ACCESS_KEY_ID, LOCAL_ACCESS_KEY_SECRET
from laoke.kit.db import Database
from laoke.kit.settings import ServiceSettings

INAPP_BUYERS = int(os.environ.get("LAOKE_BENCH_CAMPAIGN_BUYERS", "1000000"))
SMS_BUYERS = int(os.environ.get("LAOKE_BENCH_CAMPAIGN_SMS_BUYERS", "100000"))

SEED = """
    INSERT INTO segmentation.profiles (shop_id, customer_id, name, mobile, tier, points_balance, orders_count)
    SELECT :shop, 'cus_' || lpad(to_hex(n), 16, '0'), '顾客' || n, '139' || lpad(n::text, 8, '0'),
           CASE WHEN n % 10 = 0 THEN '金卡' ELSE '银卡' END, n % 5000, 1
    FROM generate_series(0, CAST(:buyers AS int) - 1) n
"""


async def _campaign(
    client: httpx.AsyncClient,
    ctx: BenchContext,
    headers: dict[str, str],
    buyers: int,
    channel: str,
    body: str,
) -> dict[str, Any]:
    db = Database(ServiceSettings(service_name="segmentation", database_url=ctx.database_url, db_pool_size=1))
    shop_id = (await client.get(f"{ctx.gateway_url}/api/v1/me", headers=headers)).json()["shop_id"]
    try:
        async with db.transaction() as session:
            await session.execute(text(SEED), {"shop": shop_id, "buyers": buyers})
            await session.execute(text("ANALYZE segmentation.profiles"))
    finally:
        await db.dispose()
    started = time.perf_counter()
    segment = await client.post(
        f"{ctx.gateway_url}/api/v1/segments",
        json={"name": "全部", "rule": {"all": [{"field": "orders_count", "op": "gte", "value": 1}]}},
        headers=headers,
    )
    segment.raise_for_status()
    segment_seconds = time.perf_counter() - started
    assert segment.json()["size"] == buyers, segment.json()
    template = await client.post(
        f"{ctx.gateway_url}/api/v1/templates",
        json={"name": "压测", "channel": channel, "body": body},
        headers=headers,
    )
    template.raise_for_status()
    created = await client.post(
        f"{ctx.gateway_url}/api/v1/campaigns",
        json={
            "name": f"{channel} 压测",
            "segment_id": segment.json()["id"],
            "channel": channel,
            "template_id": template.json()["id"],
            "holdout_percent": 5,
        },
        headers=headers,
    )
    created.raise_for_status()
    campaign_id = created.json()["id"]
    launched = time.perf_counter()
    (
        await client.post(f"{ctx.gateway_url}/api/v1/campaigns/{campaign_id}/launch", headers=headers)
    ).raise_for_status()
    report: dict[str, Any] = {}
    while True:
        await asyncio.sleep(1)
        report = (
            await client.get(f"{ctx.gateway_url}/api/v1/campaigns/{campaign_id}", headers=headers)
        ).json()
        if report["status"] in ("completed", "failed"):
            break
    seconds = time.perf_counter() - launched
    snapshot = datetime.fromisoformat(report["snapshot_at"]) - datetime.fromisoformat(report["launched_at"])
    handled = report["targeted"]
    return {
        "buyers": buyers,
        "segment_create_seconds": round(segment_seconds, 1),
        "status": report["status"],
        "targeted": report["targeted"],
        "holdout": report["holdout"],
        "sent": report["sent"],
        "suppressed": report["suppressed"],
        "failed": report["failed"],
        "launch_to_snapshot_seconds": round(snapshot.total_seconds(), 1),
        "launch_to_completed_seconds": round(seconds, 1),
        "messages_per_second": round(handled / seconds),
    }


async def run(ctx: BenchContext) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=600) as client:
        inapp_shop = await ctx.new_shop(client, "站内信压测")
        inapp_headers = {"Authorization": f"Bearer {inapp_shop['api_key']}"}
        quiet_off = {"quiet_start": None, "quiet_end": None, "cap_messages": 100}
        await client.put(f"{ctx.gateway_url}/api/v1/messaging/policy", json=quiet_off, headers=inapp_headers)
        inapp = await _campaign(
            client, ctx, inapp_headers, INAPP_BUYERS, "inapp", "{{name}}，{{tier}}专享礼遇"
        )

        sms_shop = await ctx.new_shop(client, "短信压测")
        sms_headers = {"Authorization": f"Bearer {sms_shop['api_key']}"}
        await client.put(f"{ctx.gateway_url}/api/v1/messaging/policy", json=quiet_off, headers=sms_headers)
        configured = await client.put(
            f"{ctx.gateway_url}/api/v1/messaging/channels/sms",
            json={
                "access_key_id": LOCAL_ACCESS_KEY_ID,
                "access_key_secret": LOCAL_ACCESS_KEY_SECRET,
                "sign_name": "老客小店",
                "rate_per_second": 10_000,
            },
            headers=sms_headers,
        )
        configured.raise_for_status()
        sms = await _campaign(client, ctx, sms_headers, SMS_BUYERS, "sms", "{{name}}您好，老客专享，回TD退订")
    result: dict[str, object] = {"inapp": inapp, "sms": sms}
    result["met"] = bool(
        inapp["messages_per_second"] >= 20_000
        and sms["messages_per_second"] >= 5_000
        and inapp["status"] == sms["status"] == "completed"
    )
    write_result("campaigns", result)
    return result
