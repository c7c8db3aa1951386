"""A history import absorbed set-based: a shop's first import inserts plainly, later ones upsert, and
either way each order is booked once and orders known from live events keep their state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.db import Database
from laoke.testing.factories import import_feed_row
from laoke.testing.servers import ServerSet
from services.loyalty import history, program

PLACED = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _order(n: int, customer: str, yuan: int, status: str = "completed") -> dict[str, object]:
    return import_feed_row(n, customer, PLACED + timedelta(days=n), yuan, status)


FILE = [
    _order(1, "cus_a", 120),
    _order(2, "cus_a", 80),
    _order(3, "cus_b", 50),
    _order(4, "cus_b", 999, status="shipped"),  # not completed: earns nothing
]


@pytest.fixture
async def session(stack: ServerSet) -> AsyncIterator[AsyncSession]:
    """A loyalty session whose transaction is rolled back at the end."""
    db = Database(stack["loyalty"].settings)
    try:
        async with db.transaction() as session:
            yield session
            await session.rollback()
    finally:
        await db.dispose()


@pytest.fixture
def shop() -> str:
    return f"shp_hist_{uuid.uuid4().hex[:12]}"


async def _absorb(session: AsyncSession, shop: str, orders: list[dict[str, object]], award: bool) -> None:
    # Only the columns loyalty asks the feed for.
    definition = ", ".join(f"{name} {kind}" for name, kind in history.FEED_COLUMNS)
    await session.execute(text(f"CREATE TEMP TABLE imported ({definition}) ON COMMIT DROP"))
    columns = [name for name, _ in history.FEED_COLUMNS]
    await session.execute(
        text(f"INSERT INTO imported VALUES ({', '.join(':' + c for c in columns)})"),  # noqa: S608
        orders,
    )
    await history.absorb(session, shop, "imported", "imp_test", await program.load(session, shop), award)
    await session.execute(text("DROP TABLE imported"))


async def _state(session: AsyncSession, shop: str) -> dict[str, object]:
    async def rows(sql: str) -> list[tuple[object, ...]]:
        return [tuple(r) for r in await session.execute(text(sql), {"shop": shop})]

    return {
        "members": await rows(
            "SELECT customer_id, points_balance, lifetime_earned FROM loyalty.members "
            "WHERE shop_id = :shop ORDER BY 1"
        ),
        "orders": await rows(
            "SELECT order_id, status, points_available FROM loyalty.orders WHERE shop_id = :shop ORDER BY 1"
        ),
        "ledger": await rows(
            "SELECT customer_id, kind, points, reference FROM loyalty.points_ledger "
            "WHERE shop_id = :shop ORDER BY reference"
        ),
        "lots": await rows(
            "SELECT customer_id, remaining FROM loyalty.points_lots WHERE shop_id = :shop ORDER BY 1, 2"
        ),
        "announced": await rows(
            "SELECT key, envelope->'payload'->>'delta' FROM loyalty.outbox "
            "WHERE shop_id = :shop AND event_type = 'loyalty.points_changed' ORDER BY 1"
        ),
    }


async def test_a_first_import_books_each_order_once_and_importing_it_again_changes_nothing(
    session: AsyncSession, shop: str
) -> None:
    await _absorb(session, shop, FILE, award=True)  # no orders yet: the plain insert
    first = await _state(session, shop)
    assert first["members"] == [("cus_a", 200, 200), ("cus_b", 50, 50)]
    assert first["orders"] == [
        ("ord_imp_1", "completed", 120),
        ("ord_imp_2", "completed", 80),
        ("ord_imp_3", "completed", 50),
        ("ord_imp_4", "shipped", 0),
    ]
    assert first["ledger"] == [
        ("cus_a", "earn", 120, "order:ord_imp_1"),
        ("cus_a", "earn", 80, "order:ord_imp_2"),
        ("cus_b", "earn", 50, "order:ord_imp_3"),
    ]
    assert first["lots"] == [("cus_a", 80), ("cus_a", 120), ("cus_b", 50)]
    assert first["announced"] == [(f"{shop}:cus_a", "200"), (f"{shop}:cus_b", "50")]

    await _absorb(session, shop, FILE, award=True)  # the shop has orders now: the upsert
    assert await _state(session, shop) == first


async def test_orders_known_from_live_events_keep_their_state_and_points(
    session: AsyncSession, shop: str
) -> None:
    # cus_a's order 1 arrived live and was refunded in part: it holds 60 points, booked live.
    await session.execute(
        text(
            "INSERT INTO loyalty.members (shop_id, customer_id, points_balance, lifetime_earned) "
            "VALUES (:shop, 'cus_a', 60, 60)"
        ),
        {"shop": shop},
    )
    await session.execute(
        text(
            "INSERT INTO loyalty.orders (shop_id, order_id, customer_id, status, paid_fen, "
            "refunded_fen, completed, placed_at, source_modified_at, points_available, "
            "points_pending) VALUES (:shop, 'ord_imp_1', 'cus_a', 'partially_refunded', 12000, "
            "6000, true, :at, :later, 60, 0)"
        ),
        {"shop": shop, "at": PLACED, "later": PLACED + timedelta(days=30)},
    )
    await _absorb(session, shop, FILE, award=True)
    state = await _state(session, shop)
    assert state["members"] == [("cus_a", 140, 140), ("cus_b", 50, 50)]
    assert state["orders"][0] == ("ord_imp_1", "partially_refunded", 60)
    assert [entry[3] for entry in state["ledger"]] == ["order:ord_imp_2", "order:ord_imp_3"]


async def test_history_without_points_lands_orders_and_members_only(session: AsyncSession, shop: str) -> None:
    await _absorb(session, shop, FILE, award=False)
    state = await _state(session, shop)
    assert state["members"] == [("cus_a", 0, 0), ("cus_b", 0, 0)]
    assert [(o[0], o[2]) for o in state["orders"]] == [(f"ord_imp_{n}", 0) for n in (1, 2, 3, 4)]
    assert state["ledger"] == state["lots"] == state["announced"] == []
