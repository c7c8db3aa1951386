"""A history import's new profiles are written already scored: exactly as a rescore would score them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text

from laoke.kit.db import Database
from laoke.testing.factories import import_feed_row
from laoke.testing.servers import ServerSet
from services.segmentation import rfm, rfm_config
from services.segmentation.repository import IMPORT_COLUMNS, ProfileRepository

AS_OF = datetime(2026, 6, 30, 12, tzinfo=UTC)


def _order(n: int, customer: str, days_ago: float, yuan: int, status: str = "completed") -> dict[str, object]:
    return import_feed_row(n, customer, AS_OF - timedelta(days=days_ago), yuan, status)


async def test_new_profiles_are_scored_as_a_rescore_would_and_known_ones_still_announce(
    stack: ServerSet,
) -> None:
    shop = f"shp_import_{uuid.uuid4().hex[:12]}"
    orders = [
        # Three orders in the last 20 days, 600 yuan: R5 F3 M3, a new buyer (first order within 90 days).
        _order(1, "cus_fresh", 5, 200),
        _order(2, "cus_fresh", 12, 200),
        _order(3, "cus_fresh", 20, 200),
        # One order 200 days ago and one 400 days ago (outside the 365-day window): R1 F1 M2, churned.
        _order(4, "cus_gone", 200, 150),
        _order(5, "cus_gone", 400, 5000),
        # Only an unpaid (closed) order: a prospect, no scores.
        _order(6, "cus_browser", 3, 99, status="closed"),
        # An order placed after the moment scored: it moves the next recount forward.
        _order(7, "cus_later", 60, 80),
        _order(8, "cus_later", -2, 80),
        # The known buyer's order today.
        _order(9, "cus_known", 0, 120),
    ]
    db = Database(stack["segmentation"].settings)
    settings = rfm_config.PRESETS["default"]
    try:
        async with db.transaction() as session:
            # A buyer known before the import: scored as sleeping on an order 120 days ago.
            await session.execute(
                text(
                    "INSERT INTO segmentation.profile_orders (shop_id, order_id, customer_id, status, "
                    "paid_fen, refunded_fen, placed_at, source_modified_at) "
                    "VALUES (:shop, 'ord_known_0', 'cus_known', 'completed', 50000, 0, :at, :at)"
                ),
                {"shop": shop, "at": AS_OF - timedelta(days=120)},
            )
            await session.execute(
                text(
                    "INSERT INTO segmentation.profiles (shop_id, customer_id, orders_count, "
                    "total_spent_fen, first_order_at, last_order_at) "
                    "VALUES (:shop, 'cus_known', 1, 50000, :at, :at)"
                ),
                {"shop": shop, "at": AS_OF - timedelta(days=120)},
            )
            assert await rfm.rescore(session, shop, settings, AS_OF) == (1, 0, 0)
            assert await _labels(session, shop) == {"cus_known": (2, 1, 3, "important_retain", "sleeping")}

            # Only the columns segmentation asks the feed for.
            definition = ", ".join(f"{name} {kind}" for name, kind in IMPORT_COLUMNS)
            await session.execute(text(f"CREATE TEMP TABLE imported ({definition}) ON COMMIT DROP"))
            columns = [name for name, _ in IMPORT_COLUMNS]
            await session.execute(
                text(f"INSERT INTO imported VALUES ({', '.join(':' + c for c in columns)})"),  # noqa: S608
                orders,
            )
            await ProfileRepository(session).absorb_import(shop, "imported", settings, AS_OF)
            labels = await _labels(session, shop)
            assert labels == {
                "cus_fresh": (5, 3, 3, "important_value", "new"),
                "cus_gone": (1, 1, 2, "general_retain", "churned"),
                "cus_browser": (None, None, None, None, "prospect"),
                "cus_later": (5, 1, 1, "general_develop", "new"),  # its last order is the later one
                "cus_known": (2, 1, 3, "important_retain", "sleeping"),  # kept for the rescore to announce
            }
            # The rescore finds every new profile as it would have scored it, and moves the known one.
            assert await rfm.rescore(session, shop, settings, AS_OF) == (1, 1, 1)
            assert (await _labels(session, shop))["cus_known"] == (5, 2, 3, "important_develop", "active")
            later = await session.scalar(
                text(
                    "SELECT rfm_recount_at FROM segmentation.profiles "
                    "WHERE shop_id = :shop AND customer_id = 'cus_later'"
                ),
                {"shop": shop},
            )
            assert later == AS_OF + timedelta(days=2)
            await session.rollback()
    finally:
        await db.dispose()


async def _labels(session, shop: str) -> dict[str, tuple[object, ...]]:  # type: ignore[no-untyped-def]
    rows = await session.execute(
        text(
            "SELECT customer_id, r_score, f_score, m_score, rfm_segment, lifecycle "
            "FROM segmentation.profiles WHERE shop_id = :shop"
        ),
        {"shop": shop},
    )
    return {r[0]: tuple(r[1:]) for r in rows}


async def test_a_shops_first_import_inserts_its_orders_without_looking_for_known_ones(
    stack: ServerSet,
) -> None:
    """A shop without orders takes its first import's orders without the update of known orders or the
    anti join: on a `profile_orders` vacuumed while empty the planner rescanned the whole table for
    every inserted order (20,000 orders 3.6 s). A later import updates what it knew, newer states only."""
    shop = f"shp_import_{uuid.uuid4().hex[:12]}"
    settings = rfm_config.PRESETS["default"]
    db = Database(stack["segmentation"].settings)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def profile_orders_statements() -> list[str]:
        return [s for s in statements if "segmentation.profile_orders" in s and "ANALYZE" not in s]

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with db.transaction() as session:
            definition = ", ".join(f"{name} {kind}" for name, kind in IMPORT_COLUMNS)
            await session.execute(text(f"CREATE TEMP TABLE imported ({definition}) ON COMMIT DROP"))
            columns = [name for name, _ in IMPORT_COLUMNS]
            fill = text(f"INSERT INTO imported VALUES ({', '.join(':' + c for c in columns)})")  # noqa: S608
            await session.execute(
                fill, [_order(1, "cus_a", 30, 100), _order(2, "cus_a", 10, 100), _order(3, "cus_b", 5, 300)]
            )
            statements.clear()
            await ProfileRepository(session).absorb_import(shop, "imported", settings, AS_OF)
            first = profile_orders_statements()
            assert not any(s.lstrip().startswith("UPDATE") for s in first), first
            inserts = [s for s in first if "INSERT INTO segmentation.profile_orders" in s]
            assert len(inserts) == 1 and "FROM segmentation.profile_orders" not in inserts[0], inserts

            # The next import: order 2 in a newer state, order 3 in an older one, order 4 new.
            await session.execute(text("TRUNCATE imported"))
            newer = _order(2, "cus_a", 10, 100) | {
                "paid_fen": 8_000,
                "source_modified_at": AS_OF - timedelta(days=1),
            }
            older = _order(3, "cus_b", 5, 300) | {
                "paid_fen": 100,
                "source_modified_at": AS_OF - timedelta(days=9),
            }
            await session.execute(fill, [newer, older, _order(4, "cus_c", 1, 50)])
            statements.clear()
            await ProfileRepository(session).absorb_import(shop, "imported", settings, AS_OF)
            later = profile_orders_statements()
            assert any(s.lstrip().startswith("UPDATE segmentation.profile_orders") for s in later), later
            assert any("NOT EXISTS" in s for s in later if "INSERT INTO segmentation.profile_orders" in s)

            paid = dict(
                (
                    await session.execute(
                        text(
                            "SELECT order_id, paid_fen FROM segmentation.profile_orders WHERE shop_id = :shop"
                        ),
                        {"shop": shop},
                    )
                ).all()
            )
            assert paid == {"ord_imp_1": 10_000, "ord_imp_2": 8_000, "ord_imp_3": 30_000, "ord_imp_4": 5_000}
            spent = dict(
                (
                    await session.execute(
                        text(
                            "SELECT customer_id, total_spent_fen FROM segmentation.profiles "
                            "WHERE shop_id = :shop"
                        ),
                        {"shop": shop},
                    )
                ).all()
            )
            assert spent == {"cus_a": 18_000, "cus_b": 30_000, "cus_c": 5_000}
            await session.rollback()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
        await db.dispose()
