"""Proof under fire (issue 8): 20,000 orders while every process is killed, the broker loses its
memory and PostgreSQL crashes; afterwards every guarantee is checked against the database and the SMS
vendor, and recomputed independently from the orders that were sent.

The stack is `laoke run`'s own supervisor with real processes (ingest split into API and worker, so the
outbox relay dies on its own), the embedded PostgreSQL and broker, and the local Aliyun SMS endpoint.
Each buyer's first order triggers a welcome SMS, so "no message sent twice" is checked at the vendor.
Recovery after the broker restart is the documented one: `laoke replay --since <before the loss>`.

`make test-faults` runs it with the issue's 20,000 orders (about 8 minutes on 2 cores); `make test`
(and so CI) runs the same sabotage with 4,000 (LAOKE_FAULT_ORDERS), to keep the suite short.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from laoke.devstack.providers import LOCAL_ACCESS_KEY_ID, LOCAL_ACCESS_KEY_SECRET
from laoke.devstack.supervisor import Stack, StackConfig
from laoke.stack import GATEWAY
from laoke.testing.infra import free_port, free_port_block
from services.segmentation.rfm_config import PRESETS
from tests.faults.harness import (
    OrderStream,
    PlannedOrder,
    Saboteur,
    Supervisor,
    buyer_mobile,
    plan_deliveries,
    plan_orders,
)

pytestmark = pytest.mark.faults

ORDERS = int(os.environ.get("LAOKE_FAULT_ORDERS", "4000"))
ORDERS_PER_BUYER = 5
# The sabotage takes about 150 s (a killed consumer is back only after its group rebalances, some 10 s);
# pushes are paced so that the stream outlasts it. LAOKE_FAULT_RATE overrides.
SABOTAGE_SECONDS = 180
MAX_RATE = 150.0
VICTIMS = ("ingest", "ingest-worker", "segmentation", "loyalty", "messaging", "gateway")
SERVICES = ("ingest", "segmentation", "loyalty", "messaging", "gateway")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    env = {
        "GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
        "GATEWAY_RATE_LIMIT_BURST": "1000000",
        # A crashed dispatcher's sends are looked up at the vendor after this lease (default 5 min).
        "MESSAGING_SEND_LEASE_SECONDS": "15",
        "LOYALTY_ACTIVITIES_SECONDS": "5",
    }
    base = free_port_block(27)  # gateway, services, split workers; local SMTP +25, SMS endpoint +26
    config = StackConfig(
        folder=tmp_path / "stack",
        port_base=base,
        pg_port=free_port(),
        broker_port=free_port(),
        database="laoke_faults",
        # fsync off only spares the disk: the OS keeps what a killed PostgreSQL wrote. Commits stay
        # synchronous, so a commit acknowledged before the crash must survive it.
        pg_settings={"fsync": "off", "full_page_writes": "off"},
        extra_env=env,
        split_workers=("ingest",),
    )
    stack = Stack(config)
    await asyncio.to_thread(stack.start)
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


async def test_orders_survive_kills_a_broker_restart_and_a_database_crash(stack: Stack) -> None:
    gateway = stack.config.url(GATEWAY)
    shop = await _prepare_shop(gateway, stack.env["LAOKE_ADMIN_TOKEN"])
    planned = plan_orders(ORDERS // ORDERS_PER_BUYER, ORDERS_PER_BUYER)
    deliveries = plan_deliveries(planned)
    began = datetime.now(UTC)

    supervisor = Supervisor(stack)
    supervisor.start()
    saboteur = Saboteur(stack)
    rate = float(os.environ.get("LAOKE_FAULT_RATE", "0")) or min(MAX_RATE, len(deliveries) / SABOTAGE_SECONDS)
    stream = OrderStream(gateway, shop, deliveries, rate)
    try:
        sending = asyncio.create_task(stream.run())
        await asyncio.to_thread(_sabotage, saboteur, stream, len(deliveries))
        report = await sending
    finally:
        supervisor.stopping.set()
        supervisor.join()
    print("\n".join(saboteur.log))
    print(f"stream: {len(report.accepted)} accepted in {report.seconds:.0f} s, {report.attempts} attempts, "
          f"refusals {dict(report.refusals)}")  # fmt: skip

    # Every refusal was a 5xx or a closed door, never a 4xx to a valid order; every order got in.
    assert report.wrong_refusals == []
    assert set(report.refusals) <= {"502", "503", "504"} | _TRANSPORT_NAMES, report.refusals
    assert len(report.accepted) == len(planned)
    assert all(supervisor.restarted[name] >= 2 for name in VICTIMS), supervisor.restarted

    # The documented recovery from the broker's lost memory: replay the outboxes from before the loss.
    assert saboteur.broker_restarted_at is not None
    replay = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "laoke.cli", "replay", "--since", began.isoformat()],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr

    async with _database(stack) as db:
        await _settled(db, shop["shop_id"], planned)
        await _check_orders_stored_once(db, shop["shop_id"], planned)
        customers = await _customers_by_buyer(db, shop["shop_id"], planned)
        await _check_points(db, shop["shop_id"], planned, customers)
        await _check_rfm(db, shop["shop_id"], planned, customers)
        await _check_messages(db, stack, shop["shop_id"], planned)


_TRANSPORT_NAMES = {
    "ConnectError", "ReadError", "WriteError", "RemoteProtocolError", "ReadTimeout", "ConnectTimeout",
    "PoolTimeout", "WriteTimeout", "LocalProtocolError",
}  # fmt: skip


def _sabotage(saboteur: Saboteur, stream: OrderStream, total: int) -> None:
    """Two rounds of SIGKILLs through every process, the broker restart and the database crash in the
    middle; each fault waits for the previous one's recovery and for some orders in between, and all
    must fall while orders are still streaming."""

    def after(fraction: float) -> None:
        while stream.sent < fraction * total:
            time.sleep(0.05)

    steps = [*VICTIMS, "broker", "postgres", *VICTIMS]
    for i, step in enumerate(steps):
        after(0.03 + 0.8 * i / len(steps))
        assert not stream.finished, f"the stream ended before {step} could be sabotaged: lower the rate"
        if step == "broker":
            saboteur.restart_broker()
        elif step == "postgres":
            saboteur.crash_postgres(seconds=3)
        else:
            saboteur.kill(step)


async def _prepare_shop(gateway: str, admin_token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        created = await client.post(
            "/api/v1/admin/shops",
            json={"name": "故障演练小店"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert created.status_code == 201, created.text
        shop = dict(created.json())
        headers = {"Authorization": f"Bearer {shop['api_key']}"}

        async def call(method: str, path: str, body: dict[str, Any]) -> Any:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.is_success, response.text
            return response.json()

        await call("PUT", "/api/v1/messaging/policy", {"quiet_start": None, "quiet_end": None})
        await call(
            "PUT",
            "/api/v1/messaging/channels/sms",
            {
                "provider": "aliyun",
                "access_key_id": LOCAL_ACCESS_KEY_ID,
                "access_key_secret": LOCAL_ACCESS_KEY_SECRET,
                "sign_name": "老客小店",
                "rate_per_second": 1000,
            },
        )
        template = await call(
            "POST",
            "/api/v1/templates",
            {"name": "欢迎", "channel": "sms", "body": "欢迎{{name}}成为我们的会员"},
        )
        await call("PUT", "/api/v1/automations/welcome", {"channel": "sms", "template_id": template["id"]})
        return shop


@asynccontextmanager
async def _database(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.env["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://"))
    try:
        yield conn
    finally:
        await conn.close()


async def _settled(
    db: asyncpg.Connection, shop: str, planned: list[PlannedOrder], within: float = 300
) -> None:
    """Wait until every outbox is published and every consumer has caught up with the orders."""
    checks = {
        "ingest orders": ("SELECT count(*) FROM ingest.orders WHERE shop_id = $1", len(planned)),
        "loyalty orders": ("SELECT count(*) FROM loyalty.orders WHERE shop_id = $1", len(planned)),
        "segmentation orders": (
            "SELECT count(*) FROM segmentation.profile_orders WHERE shop_id = $1", len(planned)
        ),
        "profiles recomputed": (
            "SELECT coalesce(sum(orders_count), 0) FROM segmentation.profiles WHERE shop_id = $1",
            len(planned),
        ),
        "messaging orders": ("SELECT count(*) FROM messaging.orders WHERE shop_id = $1", len(planned)),
        "messages waiting": (
            "SELECT count(*) FROM messaging.messages WHERE shop_id = $1 AND status IN ('queued', 'sending')",
            0,
        ),
    }  # fmt: skip
    unpublished = " + ".join(
        f"(SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL)"  # noqa: S608 - constants
        for schema in SERVICES
    )
    deadline = time.monotonic() + within
    while True:
        seen = {name: await db.fetchval(sql, shop) for name, (sql, _) in checks.items()}
        seen["unpublished events"] = await db.fetchval(f"SELECT {unpublished}")
        wanted = {name: want for name, (_, want) in checks.items()} | {"unpublished events": 0}
        if seen == wanted:
            return
        assert time.monotonic() < deadline, f"not settled after {within:.0f} s: {seen} (wanted {wanted})"
        await asyncio.sleep(1)


async def _check_orders_stored_once(db: asyncpg.Connection, shop: str, planned: list[PlannedOrder]) -> None:
    rows = await db.fetch(
        "SELECT channel, external_order_id, paid_fen FROM ingest.orders WHERE shop_id = $1", shop
    )
    stored = Counter((r["channel"], r["external_order_id"]) for r in rows)
    assert set(stored.values()) == {1}
    assert {(r["channel"], r["external_order_id"]): r["paid_fen"] for r in rows} == {
        ("taobao" if o.channel == "taobao" else "api", o.order_id): o.paid_fen for o in planned
    }


async def _customers_by_buyer(
    db: asyncpg.Connection, shop: str, planned: list[PlannedOrder]
) -> dict[int, str]:
    """Each planned buyer's customer id; all their orders must have landed on that one customer."""
    rows = await db.fetch("SELECT external_order_id, customer_id FROM ingest.orders WHERE shop_id = $1", shop)
    customer_of_order = {r["external_order_id"]: r["customer_id"] for r in rows}
    by_buyer: dict[int, set[str]] = defaultdict(set)
    for order in planned:
        by_buyer[order.buyer].add(customer_of_order[order.order_id])
    assert all(len(ids) == 1 for ids in by_buyer.values())
    customers = {buyer: ids.pop() for buyer, ids in by_buyer.items()}
    assert len(set(customers.values())) == len(customers)  # no two buyers merged
    return customers


async def _check_points(
    db: asyncpg.Connection, shop: str, planned: list[PlannedOrder], customers: dict[int, str]
) -> None:
    # Exactly one earn per order (every order is completed and paid more than a yuan), and nothing else.
    entries = await db.fetch(
        "SELECT kind, reference, points, customer_id FROM loyalty.points_ledger WHERE shop_id = $1",
        shop,
    )
    assert Counter(e["kind"] for e in entries) == Counter({"earn": len(planned)})
    internal = {
        r["external_order_id"]: r["id"]
        for r in await db.fetch("SELECT id, external_order_id FROM ingest.orders WHERE shop_id = $1", shop)
    }
    earned = {e["reference"]: e["points"] for e in entries}
    assert earned == {f"order:{internal[o.order_id]}": o.points for o in planned}

    # Balances: the member row, the sum of its entries, and the orders sent, all three agree.
    expected: Counter[str] = Counter()
    for order in planned:
        expected[customers[order.buyer]] += order.points
    members = await db.fetch(
        "SELECT m.customer_id, m.points_balance, m.lifetime_earned, "
        "       (SELECT coalesce(sum(points), 0) FROM loyalty.points_ledger l "
        "         WHERE l.shop_id = m.shop_id AND l.customer_id = m.customer_id) AS entries "
        "FROM loyalty.members m WHERE m.shop_id = $1",
        shop,
    )
    assert {m["customer_id"]: m["points_balance"] for m in members} == dict(expected)
    assert all(m["points_balance"] == m["entries"] == m["lifetime_earned"] for m in members)


def _score(value: float, bounds: list[int], *, descending: bool = False) -> int:
    """1–5 against four boundaries: recency counts down (fewer days is better), the others up."""
    if descending:
        return next((5 - i for i, bound in enumerate(bounds) if value <= bound), 1)
    return 1 + sum(value >= bound for bound in bounds)


async def _check_rfm(
    db: asyncpg.Connection, shop: str, planned: list[PlannedOrder], customers: dict[int, str]
) -> None:
    rfm = PRESETS["default"]
    profiles = {
        p["customer_id"]: p
        for p in await db.fetch(
            "SELECT customer_id, orders_count, total_spent_fen, first_order_at, last_order_at, "
            "r_score, f_score, m_score, scored_at FROM segmentation.profiles WHERE shop_id = $1",
            shop,
        )
    }
    orders_of: dict[int, list[PlannedOrder]] = defaultdict(list)
    for order in planned:
        orders_of[order.buyer].append(order)
    mismatches = []
    for buyer, orders in orders_of.items():
        p = profiles[customers[buyer]]
        as_of = p["scored_at"]
        window = [o for o in orders if as_of - timedelta(days=rfm.window_days) <= o.placed_at <= as_of]
        last = max(o.placed_at for o in orders)
        days = (as_of - last).total_seconds() // 86400
        want = {
            "orders_count": len(orders),
            "total_spent_fen": sum(o.paid_fen for o in orders),
            "first_order_at": min(o.placed_at for o in orders),
            "last_order_at": last,
            "r_score": _score(days, rfm.recency_days, descending=True),
            "f_score": _score(len(window), rfm.frequency),
            "m_score": _score(sum(o.paid_fen for o in window), rfm.monetary_fen),
        }
        got = {key: p[key] for key in want}
        if got != want:
            mismatches.append((buyer, got, want))
    assert mismatches == []


async def _check_messages(
    db: asyncpg.Connection, stack: Stack, shop: str, planned: list[PlannedOrder]
) -> None:
    """Welcomes: at most one per buyer, every one sent, and the vendor received each exactly once.

    A buyer is welcomed when messaging sees their first order arrive before any other; a `paid` push
    whose event was lost with the broker's memory and replayed after the buyer's next order is rightly
    no welcome, so not every buyer has one, but nearly all must."""
    rows = await db.fetch("SELECT source, status, recipient FROM messaging.messages WHERE shop_id = $1", shop)
    buyers = {o.buyer for o in planned}
    assert {r["status"] for r in rows} == {"sent"}
    assert all(r["source"].startswith("welcome") for r in rows)
    welcomed = Counter(r["recipient"] for r in rows)
    assert set(welcomed.values()) == {1} and set(welcomed) <= {buyer_mobile(b) for b in buyers}
    assert len(welcomed) >= 0.9 * len(buyers), f"only {len(welcomed)} of {len(buyers)} buyers welcomed"
    async with httpx.AsyncClient(timeout=30) as client:
        received = (
            await client.get(f"http://{stack.config.host}:{stack.config.providers_port}/_local/sms")
        ).json()
    assert Counter(sms["phone"] for sms in received) == welcomed
