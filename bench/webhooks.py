"""Webhooks through the gateway: signed Taobao trade pushes, open loop, one new order per request.

Each request is a real TOP trade body with a fresh `X-Laoke-Signature`, sent to
`/api/v1/webhooks/taobao/{shop}`: the gateway looks up the shop's secrets and forwards, ingest
verifies the signature, dedupes the delivery and upserts the order (buyer resolution included).
Targets (issue 3): ≥ 1,500 orders/s sustained; p99 ≤ 30 ms at 1,000 orders/s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

from bench.common import BenchContext, summarize_ms, write_result
from bench.loadgen import build_request, open_loop
from services.ingest.signatures import sign_laoke

RATES = tuple(float(r) for r in os.environ.get("LAOKE_BENCH_WEBHOOK_RATES", "1000,1500").split(","))
SECONDS = float(os.environ.get("LAOKE_BENCH_SECONDS", "10"))
TRADE = json.loads((Path(__file__).parents[1] / "tests/fixtures/webhooks/taobao_trade.json").read_text())


async def run(ctx: BenchContext) -> dict[str, object]:
    by_rate = {f"{rate:.0f}": await run_at(ctx, rate) for rate in RATES}
    result = {"rates": by_rate}
    write_result("webhooks", result)
    return result


async def run_at(ctx: BenchContext, rate: float) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=30) as client:
        shop = await ctx.new_shop(client, f"bench-webhooks-{rate:.0f}")
    path = f"/api/v1/webhooks/taobao/{shop['shop_id']}"
    secret = shop["webhook_secret"]

    def trade_request(i: int) -> bytes:
        # 5,000 buyers, each with their own mobile: with the fixture's one number every buyer merged into
        # a single customer, whose events then all queued on one partition and one row.
        buyer = i % 5000
        body = orjson.dumps(
            TRADE
            | {
                "tid": f"9{int(rate)}{i:09d}",
                "buyer_nick": f"bench_nick_{buyer}",
                "buyer_open_uid": None,
                "receiver_mobile": f"139{buyer:08d}",
            }
        )
        headers = {"Content-Type": "application/json", "X-Laoke-Signature": sign_laoke(body, secret)}
        return build_request("POST", path, headers, body)

    gateway = urlsplit(ctx.gateway_url)
    load = await open_loop(gateway.hostname or "127.0.0.1", gateway.port or 80, trade_request, rate, SECONDS)
    ok = load.statuses.get(200, 0)
    latency = summarize_ms(load.latencies_ms)
    return {
        "rate_per_second": rate,
        "seconds": SECONDS,
        "accepted": ok,
        "failed": load.errors + sum(n for status, n in load.statuses.items() if status != 200),
        "statuses": {str(k): v for k, v in load.statuses.items()},
        "achieved_rate_per_second": round(load.throughput, 1),
        "latency": latency,
        "met": {
            "sustained": load.throughput >= 0.98 * rate and ok == int(rate * SECONDS),
            "p99_30ms_at_1000": latency["p99_ms"] <= 30.0 if rate <= 1000 else None,
        },
    }
