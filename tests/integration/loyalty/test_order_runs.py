"""A run of order events is settled with one read of its members, orders and tier progress and one write
at its end: what every member, order, ledger entry, lot and event ends up as must not depend on how the
events were cut into runs."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from laoke.contracts.loyalty import POINTS_CHANGED, TIER_CHANGED
from laoke.contracts.orders import OrderStatus
from laoke.kit.db import Database
from laoke.kit.outbox import Outbox
from laoke.testing.factories import order_payload
from laoke.testing.servers import ServerSet
from services.loyalty.models import plumbing
from services.loyalty.orders import apply_orders
from services.loyalty.program import ProgramSettings

PROGRAM = ProgramSettings.model_validate(
    {
        "credit_on": "paid",
        "tiers": [
            {"level": 1, "name": "普通会员", "discount": 100},
            {"level": 2, "name": "银卡", "min_spend": "500", "discount": 98},
            {"level": 3, "name": "金卡", "min_spend": "900", "min_orders": 3, "discount": 95},
        ],
    }
)


RUN = [
    # Wang: paid (pending), completed (released), then half refunded (points taken back from a lot
    # credited earlier in the same run), and a second order that lifts him two tiers, one at a time.
    order_payload("ord_w1", "cus_wang", OrderStatus.PAID, 1, 60_000),
    order_payload("ord_w1", "cus_wang", OrderStatus.COMPLETED, 2, 60_000, completed=True),
    order_payload("ord_w1", "cus_wang", OrderStatus.PARTIALLY_REFUNDED, 3, 60_000, 30_000, completed=True),
    order_payload("ord_w2", "cus_wang", OrderStatus.COMPLETED, 4, 40_000, completed=True),
    order_payload("ord_w3", "cus_wang", OrderStatus.COMPLETED, 5, 30_000, completed=True),
    # Li: an order whose older state arrives after its newer one, and one closed before payment.
    order_payload("ord_l1", "cus_li", OrderStatus.COMPLETED, 9, 20_000, completed=True),
    order_payload("ord_l1", "cus_li", OrderStatus.PAID, 8, 20_000),
    order_payload("ord_l2", "cus_li", OrderStatus.CREATED, 1, 0),
    order_payload("ord_l2", "cus_li", OrderStatus.CLOSED, 2, 0),
    # Zhao: paid, then refunded in full before completion: the pending points lapse.
    order_payload("ord_z1", "cus_zhao", OrderStatus.PAID, 1, 10_000),
    order_payload("ord_z1", "cus_zhao", OrderStatus.REFUNDED, 2, 10_000, 10_000),
]


async def _state(db: Database, shop: str) -> dict[str, Any]:
    queries = {
        "members": "SELECT customer_id, points_balance, points_pending, lifetime_earned, tier_level "
        "FROM loyalty.members WHERE shop_id = :shop ORDER BY customer_id",
        "orders": "SELECT order_id, customer_id, status, paid_fen, refunded_fen, completed, "
        "points_available, points_pending FROM loyalty.orders WHERE shop_id = :shop ORDER BY order_id",
        "entries": "SELECT customer_id, kind, points, pending, reference, note FROM loyalty.points_ledger "
        "WHERE shop_id = :shop ORDER BY customer_id, id",
        "lots": "SELECT customer_id, points, remaining FROM loyalty.points_lots "
        "WHERE shop_id = :shop ORDER BY customer_id, id",
        "events": "SELECT key, event_type, envelope->'payload' FROM loyalty.outbox "
        "WHERE shop_id = :shop ORDER BY key, id",
    }
    async with db.transaction() as session:
        state = {
            name: [tuple(row) for row in await session.execute(text(sql), {"shop": shop})]
            for name, sql in queries.items()
        }
    # Keys name the shop; what they say of each buyer is what must agree.
    state["events"] = [(key.split(":", 1)[1], *rest) for key, *rest in state["events"]]
    return state


async def test_a_run_ends_as_the_same_events_one_by_one(stack: ServerSet) -> None:
    db = Database(stack["loyalty"].settings)
    outbox = Outbox(plumbing.outbox, producer="loyalty")
    whole, one_by_one = (f"shp_runs_{uuid.uuid4().hex[:12]}" for _ in range(2))
    try:
        async with db.transaction() as session:
            await apply_orders(session, outbox, whole, RUN, PROGRAM)
        for order in RUN:
            async with db.transaction() as session:
                await apply_orders(session, outbox, one_by_one, [order], PROGRAM)
        together, apart = await _state(db, whole), await _state(db, one_by_one)
    finally:
        await db.dispose()

    assert together == apart
    members = {row[0]: row[1:] for row in together["members"]}
    # (balance, pending, lifetime earned, tier): Wang kept 300 + 400 + 300 yuan over three orders.
    assert members == {"cus_li": (200, 0, 200, 1), "cus_wang": (1000, 0, 1300, 3), "cus_zhao": (0, 0, 0, 1)}
    events: dict[str, list[tuple[Any, ...]]] = {}
    for customer, event_type, payload in together["events"]:
        if event_type == TIER_CHANGED:
            events.setdefault(customer, []).append((payload["from_level"], payload["to_level"]))
        else:
            assert event_type == POINTS_CHANGED
            events.setdefault(customer, []).append(
                (
                    payload["kind"],
                    payload["delta"],
                    payload["pending_delta"],
                    payload["balance"],
                    payload["pending"],
                )
            )
    # Each order still raises the tier it reaches, one event per step, after its points.
    assert events == {
        "cus_wang": [
            ("pending", 0, 600, 0, 600),
            (None, 1),
            ("release", 600, -600, 600, 0),
            (1, 2),
            ("reverse", -300, 0, 300, 0),
            ("earn", 400, 0, 700, 0),
            ("earn", 300, 0, 1000, 0),
            (2, 3),
        ],
        "cus_li": [("earn", 200, 0, 200, 0), (None, 1)],
        "cus_zhao": [("pending", 0, 100, 0, 100), (None, 1), ("reverse", 0, -100, 0, 0)],
    }
