"""The realistic mix (issue 8, item 5): webhooks, API reads, sign-ins and redemptions at once, open loop,
for a fixed time, with a campaign launched a third of the way in; throughput and latency per route,
and each process's memory sampled throughout to show whether it grows.

This module runs in the benchmark process, a process of its own beside the stack's (loopback only).
Each route is its own open-loop stream (bench/loadgen.py: latency counts from when a request was due).
Before the measured window the same mix runs for a warm-up, so pools, caches and the JIT-less
interpreter's first allocations are not mistaken for growth. Memory is each process's resident set
(VmRSS) every few seconds; the trend is a least-squares slope over the measured window.

Settings: LAOKE_BENCH_MIX_SECONDS (default 120), LAOKE_BENCH_MIX_SCALE (multiplies every rate, 1.0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import text

from bench.common import BenchContext, summarize_ms, write_result
from bench.loadgen import LoadResult, build_request, open_loop
from laoke.kit.db import Database
from laoke.kit.settings import ServiceSettings
from services.ingest.signatures import sign_laoke

SECONDS = float(os.environ.get("LAOKE_BENCH_MIX_SECONDS", "120"))
WARMUP_SECONDS = float(os.environ.get("LAOKE_BENCH_MIX_WARMUP_SECONDS", "20"))
SCALE = float(os.environ.get("LAOKE_BENCH_MIX_SCALE", "1.0"))
SAMPLE_EVERY_SECONDS = 5.0
MEMBERS = 5000
# Requests per second by route: a busy shop's day compressed (pushes dominate, then the console's and
# apps' reads, then members' own actions).
RATES = {
    "webhook (Taobao trade)": 40.0,
    "GET /api/v1/orders": 10.0,
    "GET /api/v1/customers": 10.0,
    "GET /api/v1/loyalty/members/{id}": 20.0,
    "POST /api/v1/loyalty/members/{id}/signin": 10.0,
    "POST /api/v1/loyalty/members/{id}/redemptions": 5.0,
}
TRADE = json.loads((Path(__file__).parents[1] / "tests/fixtures/webhooks/taobao_trade.json").read_text())
SEED = [
    """INSERT INTO loyalty.points_ledger (shop_id, customer_id, kind, points, reference)
       SELECT :shop, 'cus_mix' || lpad(n::text, 9, '0'), 'adjust', 100000, 'seed:' || n
       FROM generate_series(0, CAST(:members AS int) - 1) n""",
    """INSERT INTO loyalty.points_lots (shop_id, customer_id, entry_id, points, remaining, earned_at)
       SELECT shop_id, customer_id, id, points, points, now()
       FROM loyalty.points_ledger WHERE shop_id = :shop""",
    """INSERT INTO loyalty.members (shop_id, customer_id, points_balance)
       SELECT shop_id, customer_id, points FROM loyalty.points_ledger WHERE shop_id = :shop""",
]


def _member(i: int) -> str:
    return f"cus_mix{i % MEMBERS:09d}"


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 60 if var else 0.0


class MemoryWatch:
    def __init__(self, ctx: BenchContext) -> None:
        self.pids = {name: child.process.pid for name, child in ctx.stack.children.items()}
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self.pids}
        self.started = time.monotonic()

    def sample(self) -> None:
        now = time.monotonic() - self.started
        for name, pid in self.pids.items():
            if (mib := rss_mib(pid)) is not None:
                self.samples[name].append((now, mib))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_SECONDS)
        self.sample()

    def report(self) -> dict[str, dict[str, float | bool]]:
        out: dict[str, dict[str, float | bool]] = {}
        for name, samples in self.samples.items():
            if not samples:
                continue
            before, after = samples[0][1], samples[-1][1]
            slope = slope_per_minute(samples)
            out[name] = {
                "before_mib": round(before, 1),
                "after_mib": round(after, 1),
                "peak_mib": round(max(m for _, m in samples), 1),
                "slope_mib_per_minute": round(slope, 2),
                # Growth: more than 5 % over the window and a rising trend, not a single spike.
                "growing": after > before * 1.05 and slope > 0.5,
            }
        return out


async def _prepare(ctx: BenchContext) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=ctx.gateway_url, timeout=60) as client:
        shop = await ctx.new_shop(client, "混合负载")
        headers = {"Authorization": f"Bearer {shop['api_key']}"}
        db = Database(ServiceSettings(service_name="loyalty", database_url=ctx.database_url, db_pool_size=1))
        try:
            async with db.transaction() as session:
                for statement in SEED:
                    await session.execute(text(statement), {"shop": shop["shop_id"], "members": MEMBERS})
        finally:
            await db.dispose()
        reward = await client.post(
            "/api/v1/loyalty/rewards",
            json={"name": "试用装", "kind": "gift", "points_cost": 10},
            headers=headers,
        )
        reward.raise_for_status()
        policy = {"quiet_start": None, "quiet_end": None, "cap_messages": 100}
        (await client.put("/api/v1/messaging/policy", json=policy, headers=headers)).raise_for_status()
        return shop | {"reward_id": reward.json()["id"]}


def _requests(shop: dict[str, Any], phase: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {shop['api_key']}"}
    json_auth = auth | {"Content-Type": "application/json"}
    hook = f"/api/v1/webhooks/taobao/{shop['shop_id']}"
    redeem_body = orjson.dumps({"reward_id": shop["reward_id"]})
    # Sign-ins take one member each (one a day); warm-up and measured window use different members.
    offset = 0 if phase == "warmup" else MEMBERS // 2

    def webhook(i: int) -> bytes:
        body = orjson.dumps(
            TRADE
            | {
                "tid": int(f"7{1 if phase == 'warmup' else 2}{i:010d}"),
                "buyer_nick": f"mix_nick_{i % 3000}",
                "buyer_open_uid": None,
                "receiver_mobile": f"137{i % 3000:08d}",
            }
        )
        signature = sign_laoke(body, shop["webhook_secret"])
        signed = {"Content-Type": "application/json", "X-Laoke-Signature": signature}
        return build_request("POST", hook, signed, body)

    return {
        "webhook (Taobao trade)": webhook,
        "GET /api/v1/orders": lambda i: build_request("GET", "/api/v1/orders?limit=20", auth),
        "GET /api/v1/customers": lambda i: build_request("GET", "/api/v1/customers?limit=20", auth),
        "GET /api/v1/loyalty/members/{id}": lambda i: build_request(
            "GET", f"/api/v1/loyalty/members/{_member(i * 7)}", auth
        ),
        "POST /api/v1/loyalty/members/{id}/signin": lambda i: build_request(
            "POST", f"/api/v1/loyalty/members/{_member(offset + i)}/signin", json_auth, b"{}"
        ),
        "POST /api/v1/loyalty/members/{id}/redemptions": lambda i: build_request(
            "POST", f"/api/v1/loyalty/members/{_member(i * 13)}/redemptions", json_auth, redeem_body
        ),
    }


async def _mix(ctx: BenchContext, shop: dict[str, Any], phase: str, seconds: float) -> dict[str, LoadResult]:
    gateway = urlsplit(ctx.gateway_url)
    host, port = gateway.hostname or "127.0.0.1", gateway.port or 80
    factories = _requests(shop, phase)
    routes = list(RATES)
    results = await asyncio.gather(
        *(open_loop(host, port, factories[route], RATES[route] * SCALE, seconds) for route in routes)
    )
    return dict(zip(routes, results, strict=True))


async def _campaign(ctx: BenchContext, shop: dict[str, Any], delay: float) -> dict[str, Any]:
    """A campaign to every buyer so far, launched mid-window, timed from launch to completion."""
    await asyncio.sleep(delay)
    headers = {"Authorization": f"Bearer {shop['api_key']}"}
    async with httpx.AsyncClient(base_url=ctx.gateway_url, timeout=60, headers=headers) as client:
        segment = await client.post(
            "/api/v1/segments",
            json={"name": "全部老客", "rule": {"all": [{"field": "orders_count", "op": "gte", "value": 1}]}},
        )
        segment.raise_for_status()
        body = {"name": "回馈", "channel": "inapp", "body": "{{name}}，老客回馈活动开始啦"}
        template = await client.post("/api/v1/templates", json=body)
        template.raise_for_status()
        created = await client.post(
            "/api/v1/campaigns",
            json={
                "name": "混合负载中的活动",
                "segment_id": segment.json()["id"],
                "channel": "inapp",
                "template_id": template.json()["id"],
            },
        )
        created.raise_for_status()
        campaign_id = created.json()["id"]
        launched = time.monotonic()
        (await client.post(f"/api/v1/campaigns/{campaign_id}/launch")).raise_for_status()
        while True:
            await asyncio.sleep(0.5)
            report = (await client.get(f"/api/v1/campaigns/{campaign_id}")).json()
            if report["status"] in ("completed", "failed") or time.monotonic() - launched > 600:
                break
    return {
        "segment_size": segment.json()["size"],
        "status": report["status"],
        "targeted": report["targeted"],
        "sent": report["sent"],
        "launch_to_completed_seconds": round(time.monotonic() - launched, 1),
    }


def _route_report(load: LoadResult, rate: float) -> dict[str, Any]:
    ok = sum(n for status, n in load.statuses.items() if 200 <= status < 300)
    return {
        "rate_per_second": rate,
        "achieved_per_second": round(load.throughput, 1),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "errors": load.errors,
        "latency": summarize_ms(load.latencies_ms),
    }


async def run(ctx: BenchContext) -> dict[str, object]:
    shop = await _prepare(ctx)
    await _mix(ctx, shop, "warmup", WARMUP_SECONDS)
    memory = MemoryWatch(ctx)
    stop = asyncio.Event()
    watching = asyncio.create_task(memory.run(stop))
    campaign = asyncio.create_task(_campaign(ctx, shop, SECONDS / 3))
    loads = await _mix(ctx, shop, "measured", SECONDS)
    campaign_report = await campaign
    stop.set()
    await watching
    routes = {route: _route_report(loads[route], RATES[route] * SCALE) for route in RATES}
    mem = memory.report()
    served = all(r["errors"] == 0 and r["ok"] == sum(r["statuses"].values()) for r in routes.values())
    sustained = all(r["achieved_per_second"] >= 0.95 * r["rate_per_second"] for r in routes.values())
    result: dict[str, object] = {
        "seconds": SECONDS,
        "warmup_seconds": WARMUP_SECONDS,
        "routes": routes,
        "campaign": campaign_report,
        "memory": mem,
        "met": {
            "no_errors": served,
            "rates_sustained": sustained,
            "no_memory_growth": not any(m["growing"] for m in mem.values()),
            "campaign_completed": campaign_report["status"] == "completed",
        },
    }
    write_result("mixed_load", result)
    return result
