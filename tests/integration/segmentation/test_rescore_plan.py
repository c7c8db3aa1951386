"""The statements a run of order events costs segmentation read that run's buyers by key, also for a
shop the statistics do not know yet (a new shop's first minute, before autovacuum has analysed its
rows) while they know the others. The planner takes such a shop for one row: joined on the shop, or
given an index led by the shop, it walked all of the shop for every run of events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.topics import Topic
from laoke.kit.db import Database
from laoke.testing.plans import assert_reads_by_key, explain
from laoke.testing.servers import ServerSet
from services.segmentation import repository, rfm, rfm_config

AS_OF = datetime(2026, 11, 1, 12, tzinfo=UTC)
BUYERS = 3_000
RUN = ["cus_7", "cus_2024"]


@pytest.fixture
async def unknown_shop(stack: ServerSet) -> AsyncIterator[tuple[AsyncSession, str]]:
    """A shop of 3,000 buyers with an order each and a mobile, unknown to the statistics (rolled back)."""
    shop = f"shp_plan_{uuid.uuid4().hex[:12]}"
    db = Database(stack["segmentation"].settings)
    try:
        async with db.transaction() as session:
            # An established shop the statistics know, taken before the new shop had any buyer: the new
            # one is unknown to them, as a shop in its first minute is.
            await session.execute(
                text(
                    "INSERT INTO segmentation.profiles (shop_id, customer_id) "
                    "SELECT :shop, 'cus_' || n FROM generate_series(1, :buyers) n"
                ),
                {"shop": f"{shop}_established", "buyers": BUYERS},
            )
            await session.execute(text("ANALYZE segmentation.profiles"))
            await session.execute(text("ANALYZE segmentation.profile_orders"))
            await session.execute(
                text(
                    "INSERT INTO segmentation.profiles (shop_id, customer_id, mobile, orders_count, "
                    "total_spent_fen, first_order_at, last_order_at) "
                    "SELECT :shop, 'cus_' || n, '138' || lpad(n::text, 8, '0'), 1, 5000, :at, :at "
                    "FROM generate_series(1, :buyers) n"
                ),
                {"shop": shop, "at": AS_OF - timedelta(days=3), "buyers": BUYERS},
            )
            await session.execute(
                text(
                    "INSERT INTO segmentation.profile_orders (shop_id, order_id, customer_id, status, "
                    "paid_fen, refunded_fen, placed_at, source_modified_at) "
                    "SELECT :shop, 'ord_' || n, 'cus_' || n, 'completed', 5000, 0, :at, :at "
                    "FROM generate_series(1, :buyers) n"
                ),
                {"shop": shop, "at": AS_OF - timedelta(days=3), "buyers": BUYERS},
            )
            yield session, shop
            await session.rollback()
    finally:
        await db.dispose()


async def test_a_run_is_rescored_by_key(unknown_shop: tuple[AsyncSession, str]) -> None:
    session, shop = unknown_shop
    params = rfm.score_parameters(rfm_config.PRESETS["default"], AS_OF) | {
        "shop": shop,
        "customers": RUN,
        "shops": [shop] * len(RUN),
        "topic": Topic.SEGMENTATION.value,
    }
    plan = await explain(session, rfm._RESCORE.text, params)
    assert_reads_by_key(plan, {"profiles", "profile_orders"}, most=len(RUN))

    # The two buyers were scored (first scoring: both change) and nothing else was.
    scored = await session.scalar(
        text("SELECT count(*) FROM segmentation.profiles WHERE shop_id = :shop AND r_score IS NOT NULL"),
        {"shop": shop},
    )
    assert scored == 2


async def test_a_runs_profiles_are_recomputed_by_key(unknown_shop: tuple[AsyncSession, str]) -> None:
    session, shop = unknown_shop
    await session.execute(
        text(
            "UPDATE segmentation.profile_orders SET paid_fen = 7000 "
            "WHERE shop_id = :shop AND order_id = 'ord_7'"
        ),
        {"shop": shop},
    )
    plan = await explain(session, repository._RECOMPUTE.text, {"shop_id": shop, "customers": RUN})
    assert_reads_by_key(plan, {"profile_orders"}, most=len(RUN))

    totals = dict(
        (
            await session.execute(
                text(
                    "SELECT customer_id, total_spent_fen FROM segmentation.profiles "
                    "WHERE shop_id = :shop AND customer_id = ANY(:run)"
                ),
                {"shop": shop, "run": RUN},
            )
        ).all()
    )
    assert totals == {"cus_7": 7000, "cus_2024": 5000}
