"""The fault-injection run: a whole stack of real processes, a stream of orders, and a saboteur.

`FaultStack` is the `laoke run` supervisor with ingest split into its API process and its worker (the
outbox relay and consumers), so the relay can be killed on its own. `OrderStream` sends a fixed set of
orders at a steady rate, half as signed Taobao webhooks and half through the orders API, and retries
each until it is accepted, as a marketplace or an integration would; it records every refusal. The
`Saboteur` SIGKILLs one process at a time while the supervisor restarts it, restarts the broker (its
memory storage is lost) and crashes PostgreSQL (`pg_ctl -m immediate`) for a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from laoke.devstack.supervisor import Stack
from services.ingest.signatures import sign_laoke

CHINA = ZoneInfo("Asia/Shanghai")
TRADE = json.loads((Path(__file__).parents[1] / "fixtures/webhooks/taobao_trade.json").read_text())
# Kinds of failure a sender may see while a process is down; all are refusals it retries.
TRANSPORT_ERRORS = (httpx.TransportError,)


@dataclass(frozen=True)
class PlannedOrder:
    order_id: str  # the marketplace's id (a Taobao tid, or the API's order_id)
    channel: str  # "taobao" (webhook) or "api"
    buyer: int
    number: int  # the buyer's first order is 0
    paid_fen: int
    placed_at: datetime

    @property
    def points(self) -> int:
        return self.paid_fen // 100  # the default programme: 1 point per yuan kept, rounded down


@dataclass(frozen=True)
class Delivery:
    """One push of an order's state: a buyer's first order comes as `paid` before it comes `completed`."""

    order: PlannedOrder
    status: str  # "paid" or "completed"


def buyer_mobile(buyer: int) -> str:
    return f"139{buyer:08d}"


def plan_orders(buyers: int, orders_per_buyer: int, seed: int = 20261123) -> list[PlannedOrder]:
    """Every buyer's orders, shuffled; buyers with an even number order by webhook, the others by API."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    planned = []
    for buyer in range(buyers):
        channel = "taobao" if buyer % 2 == 0 else "api"
        for n in range(orders_per_buyer):
            planned.append(
                PlannedOrder(
                    order_id=f"{buyer:05d}{n:02d}" if channel == "api" else f"88{buyer:06d}{n:03d}",
                    channel=channel,
                    buyer=buyer,
                    number=n,
                    paid_fen=rng.randrange(990, 250_000),
                    # At least 4 days ago: the order completes 3 days after it was placed, and ingest
                    # refuses times more than a day ahead of its clock.
                    placed_at=now - timedelta(days=rng.randrange(4, 330), minutes=rng.randrange(1440)),
                )
            )
    rng.shuffle(planned)
    return planned


def plan_deliveries(orders: list[PlannedOrder], seed: int = 7) -> list[Delivery]:
    """Every order completed, plus each buyer's first order paid, placed before the buyer's other pushes
    (so messaging sees a new buyer's order arrive and welcomes them)."""
    rng = random.Random(seed)
    deliveries = [Delivery(o, "completed") for o in orders]
    deliveries += [Delivery(o, "paid") for o in orders if o.number == 0]
    rng.shuffle(deliveries)
    first: dict[int, int] = {}
    for i, d in enumerate(deliveries):
        first.setdefault(d.order.buyer, i)
    for i, d in enumerate(deliveries):
        if d.status == "paid" and (j := first[d.order.buyer]) != i:
            deliveries[i], deliveries[j] = deliveries[j], d
    return deliveries


def _taobao_time(moment: datetime) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def webhook_body(order: PlannedOrder, status: str) -> bytes:
    paid = Decimal(order.paid_fen) / 100
    placed = order.placed_at
    trade = TRADE | {
        "tid": int(order.order_id),
        "status": "TRADE_FINISHED" if status == "completed" else "WAIT_SELLER_SEND_GOODS",
        "buyer_nick": f"fault_nick_{order.buyer}",
        "buyer_open_uid": f"FAULT-UID-{order.buyer:06d}",
        "payment": f"{paid:.2f}",
        "total_fee": f"{paid:.2f}",
        "discount_fee": "0.00",
        "created": _taobao_time(placed),
        "pay_time": _taobao_time(placed + timedelta(minutes=1)),
        "modified": _taobao_time(placed + timedelta(minutes=1)),
        "receiver_mobile": buyer_mobile(order.buyer),
    }
    if status == "completed":
        trade |= {
            "consign_time": _taobao_time(placed + timedelta(hours=5)),
            "end_time": _taobao_time(placed + timedelta(days=3)),
            "modified": _taobao_time(placed + timedelta(days=3)),
        }
    return json.dumps(trade, ensure_ascii=False).encode()


def api_body(order: PlannedOrder, status: str) -> dict[str, Any]:
    body = {
        "order_id": order.order_id,
        "status": status,
        "buyer": {
            "external_id": f"fault-api-{order.buyer:06d}",
            "nick": f"老客{order.buyer}",
            "mobile": buyer_mobile(order.buyer),
        },
        "total_amount": f"{Decimal(order.paid_fen) / 100:.2f}",
        "placed_at": order.placed_at.isoformat(),
        "paid_at": (order.placed_at + timedelta(minutes=1)).isoformat(),
        "modified_at": (order.placed_at + timedelta(minutes=1)).isoformat(),
    }
    if status == "completed":
        body["completed_at"] = body["modified_at"] = (order.placed_at + timedelta(days=3)).isoformat()
    return body


@dataclass
class StreamReport:
    accepted: dict[str, int] = field(default_factory=dict)  # order id → status of the accepting answer
    refusals: Counter[str] = field(default_factory=Counter)  # "503", "ConnectError", …
    wrong_refusals: list[str] = field(default_factory=list)  # 4xx answers to valid orders: never allowed
    attempts: int = 0
    seconds: float = 0.0


class OrderStream:
    def __init__(
        self,
        gateway: str,
        shop: dict[str, Any],
        deliveries: list[Delivery],
        rate: float,
        concurrency: int = 24,
    ) -> None:
        self.gateway = gateway
        self.shop = shop
        self.deliveries = deliveries
        self.rate = rate
        self.concurrency = concurrency
        self.report = StreamReport()
        self.sent = 0  # deliveries started, for the saboteur's pacing
        self.finished = False
        # A buyer's other pushes wait until their first order's `paid` push is accepted, as a
        # marketplace pushes a trade's states in order.
        self.paid_accepted = {d.order.buyer: asyncio.Event() for d in deliveries if d.status == "paid"}

    async def run(self) -> StreamReport:
        started = time.monotonic()
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        for delivery in self.deliveries:
            queue.put_nowait(delivery)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.gateway, timeout=15, limits=limits) as client:
            await asyncio.gather(*(self._sender(client, queue, started) for _ in range(self.concurrency)))
        self.report.seconds = time.monotonic() - started
        self.finished = True
        return self.report

    async def _sender(self, client: httpx.AsyncClient, queue: asyncio.Queue[Delivery], t0: float) -> None:
        while not queue.empty():
            delivery = queue.get_nowait()
            due = t0 + self.sent / self.rate
            self.sent += 1
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if delivery.status == "completed" and (paid := self.paid_accepted.get(delivery.order.buyer)):
                await paid.wait()
            await self._deliver(client, delivery)

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        order = delivery.order
        while True:
            self.report.attempts += 1
            try:
                response = await self._send(client, delivery)
            except TRANSPORT_ERRORS as exc:
                self.report.refusals[type(exc).__name__] += 1
            else:
                if response.is_success:
                    if delivery.status == "paid":
                        self.paid_accepted[order.buyer].set()
                    else:
                        self.report.accepted[order.order_id] = response.status_code
                    return
                self.report.refusals[str(response.status_code)] += 1
                if response.status_code < 500:
                    self.report.wrong_refusals.append(
                        f"{order.order_id}: {response.status_code} {response.text}"
                    )
                    return
            await asyncio.sleep(0.3)  # as a marketplace retries a push: soon, and until it is taken

    async def _send(self, client: httpx.AsyncClient, delivery: Delivery) -> httpx.Response:
        order = delivery.order
        if order.channel == "taobao":
            body = webhook_body(order, delivery.status)
            signature = sign_laoke(body, self.shop["webhook_secret"])
            return await client.post(
                f"/api/v1/webhooks/taobao/{self.shop['shop_id']}",
                content=body,
                headers={"Content-Type": "application/json", "X-Laoke-Signature": signature},
            )
        return await client.post(
            "/api/v1/orders",
            json=api_body(order, delivery.status),
            headers={"Authorization": f"Bearer {self.shop['api_key']}"},
        )


class Supervisor(threading.Thread):
    """Restarts dead processes, as `laoke run` (or Kubernetes) would, while the saboteur works."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(name="fault-supervisor", daemon=True)
        self.stack = stack
        self.stopping = threading.Event()
        self.restarted: Counter[str] = Counter()

    def run(self) -> None:
        while not self.stopping.is_set():
            for name in self.stack.watch_once():
                self.restarted[name] += 1
            time.sleep(0.1)


@dataclass
class Saboteur:
    stack: Stack
    log: list[str] = field(default_factory=list)
    broker_restarted_at: datetime | None = None

    def note(self, what: str) -> None:
        self.log.append(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {what}")

    def kill(self, name: str) -> None:
        """SIGKILL one process, then wait for the supervisor to have it serving again."""
        victim = self.stack.children[name]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        self.note(f"killed {name} (pid {victim.process.pid})")
        deadline = time.monotonic() + 60
        while self.stack.children[name].process is victim.process:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not restarted")
            time.sleep(0.05)
        self.stack.wait_ready(timeout=60, names=[name])
        self.note(f"{name} back")

    def restart_broker(self) -> None:
        assert self.stack.broker is not None
        self.broker_restarted_at = datetime.now(UTC)
        self.stack.broker.restart()
        self.stack.create_topics()
        self.note("broker restarted: every topic, record and committed offset lost; topics recreated")

    def crash_postgres(self, seconds: float) -> None:
        assert self.stack.postgres is not None
        self.stack.postgres.stop("immediate")
        self.note("PostgreSQL crashed (pg_ctl stop -m immediate)")
        time.sleep(seconds)
        self.stack.postgres.start(self.stack.config.database)
        self.note("PostgreSQL back")
