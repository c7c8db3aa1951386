"""Rescoring the buyers of a run of events reads those buyers by key, also for a shop the statistics do
not know yet (a new shop's first minute, before autovacuum has analysed its rows) while they know the
others. Joined on the shop, the planner took such a shop for one row and walked all of it for every
run of events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from laoke.contracts.topics import Topic
from laoke.kit.db import Database
from laoke.testing.servers import ServerSet
from services.segmentation import rfm, rfm_config

AS_OF = datetime(2026, 11, 1, 12, tzinfo=UTC)
BUYERS = 3_000


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if node.get("Relation Name") in ("profiles", "profile_orders") else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


async def test_a_run_of_a_shop_unknown_to_the_statistics_is_rescored_by_key(stack: ServerSet) -> None:
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
                    "INSERT INTO segmentation.profiles (shop_id, customer_id, orders_count, total_spent_fen, "
                    "first_order_at, last_order_at) "
                    "SELECT :shop, 'cus_' || n, 1, 5000, :at, :at FROM generate_series(1, :buyers) n"
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
            params = rfm.score_parameters(rfm_config.PRESETS["default"], AS_OF) | {
                "shop": shop,
                "customers": ["cus_7", "cus_2024"],
                "shops": [shop, shop],
                "topic": Topic.SEGMENTATION.value,
            }
            plan = (
                await session.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + rfm._RESCORE.text), params)
            ).scalar_one()
            scans = _scans(plan[0]["Plan"])
            assert scans, "the plan reads profiles and their orders"
            for scan in scans:
                read = scan["Actual Rows"] * scan["Actual Loops"] + scan.get("Rows Removed by Filter", 0)
                assert read <= 2, f"{scan['Node Type']} on {scan['Relation Name']} read {read} rows"

            # The two buyers were scored (first scoring: both change) and nothing else was.
            scored = await session.scalar(
                text(
                    "SELECT count(*) FROM segmentation.profiles WHERE shop_id = :shop AND r_score IS NOT NULL"
                ),
                {"shop": shop},
            )
            assert scored == 2
            await session.rollback()
    finally:
        await db.dispose()
