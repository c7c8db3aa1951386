"""Nightly points expiry over 1,000,000 members with lots, set-based.

One shop's members, ledger entries and lots are generated inside PostgreSQL (each member: one lot
of 100 points that is due, and half of them a second lot that is not), then timed through the job
the loyalty worker runs (`schedule.expire_points`). Afterwards the invariants are checked in SQL:
balance = sum of the ledger = sum of the lots for every member. Target (issue 5): ≤ 30 s.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from sqlalchemy import text

from bench.common import BenchContext, write_result
from laoke.kit.db import Database
from laoke.kit.outbox import Outbox
from laoke.kit.settings import ServiceSettings
from services.loyalty.models import plumbing
from services.loyalty.schedule import expire_points

MEMBERS = int(os.environ.get("LAOKE_BENCH_EXPIRY_MEMBERS", "1000000"))
SHOP = "shp_bench_expiry"
NOW = datetime(2026, 11, 1, tzinfo=UTC)

GENERATE = [
    "DELETE FROM loyalty.points_lots WHERE shop_id = CAST(:shop AS text)",
    "DELETE FROM loyalty.points_ledger WHERE shop_id = CAST(:shop AS text)",
    "DELETE FROM loyalty.members WHERE shop_id = CAST(:shop AS text)",
    """INSERT INTO loyalty.points_ledger (shop_id, customer_id, kind, points, reference)
       SELECT CAST(:shop AS text), 'cus_' || lpad(to_hex(n), 16, '0'), 'earn', 100, 'seed-' || k || '-' || n
       FROM generate_series(0, CAST(:members AS bigint) - 1) n, generate_series(1, 2) k
       WHERE k = 1 OR n % 2 = 0""",
    """INSERT INTO loyalty.points_lots
           (shop_id, customer_id, entry_id, points, remaining, earned_at, expires_at)
       SELECT shop_id, customer_id, id, points, points, CAST(:now AS timestamptz) - interval '400 days',
              CASE WHEN reference LIKE 'seed-1-%' THEN CAST(:now AS timestamptz) - interval '1 day'
                   ELSE CAST(:now AS timestamptz) + interval '200 days' END
       FROM loyalty.points_ledger WHERE shop_id = CAST(:shop AS text)""",
    """INSERT INTO loyalty.members (shop_id, customer_id, points_balance, lifetime_earned)
       SELECT shop_id, customer_id, sum(points), sum(points) FROM loyalty.points_ledger
       WHERE shop_id = CAST(:shop AS text) GROUP BY shop_id, customer_id""",
]
CHECK = """
    SELECT count(*) FROM loyalty.members m
    LEFT JOIN (SELECT customer_id, sum(points) AS p FROM loyalty.points_ledger
               WHERE shop_id = :shop GROUP BY 1) e USING (customer_id)
    LEFT JOIN (SELECT customer_id, sum(remaining) AS r FROM loyalty.points_lots
               WHERE shop_id = :shop GROUP BY 1) l USING (customer_id)
    WHERE m.shop_id = :shop
      AND (m.points_balance <> coalesce(e.p, 0) OR m.points_balance <> coalesce(l.r, 0)
           OR m.points_balance < 0)
"""


async def run(ctx: BenchContext) -> dict[str, object]:
    db = Database(ServiceSettings(service_name="loyalty", database_url=ctx.database_url, db_pool_size=5))
    params = {"shop": SHOP, "members": MEMBERS, "now": NOW}
    result: dict[str, object] = {"members": MEMBERS}
    try:
        started = time.perf_counter()
        async with db.transaction() as session:
            for statement in GENERATE:
                await session.execute(text(statement), params)
        async with db.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("points_ledger", "points_lots", "members"):
                # As in production, where the nightly run meets rows vacuumed long ago.
                await autocommit.execute(text(f"VACUUM ANALYZE loyalty.{table}"))
        result["generate_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        members, points = await expire_points(db, Outbox(plumbing.outbox, "loyalty"), NOW)
        result["expire_seconds"] = round(time.perf_counter() - started, 2)
        result["members_expired"] = members
        result["points_expired"] = int(points)
        async with db.transaction() as session:
            result["invariant_violations"] = int(await session.scalar(text(CHECK), params) or 0)
            await session.execute(text("DELETE FROM loyalty.outbox WHERE shop_id = :shop"), params)
    finally:
        await db.dispose()
    result["met"] = result["expire_seconds"] <= 30 and result["invariant_violations"] == 0  # type: ignore[operator]
    write_result("loyalty_expiry", result)
    return result
