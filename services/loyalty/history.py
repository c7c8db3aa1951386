"""A history import (`import.completed`), set-based: the orders join this service's order view (so a
later refund of an old order is handled like any other), tiers count their spend, and, when the owner
asked for it (`award_points`), completed orders earn their points as they would have live.

Events: one `loyalty.points_changed` per member (the import's total, reference `import:<id>`) and one
`loyalty.tier_changed` per member whose tier rose (services/loyalty/tiers.py), instead of one per order.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.imports import IMPORT_FEED_COLUMNS
from laoke.contracts.loyalty import POINTS_CHANGED
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.db import insert_plainly
from laoke.kit.outbox import envelope_sql
from services.loyalty import tiers
from services.loyalty.program import ProgramSettings

# What `absorb` reads of an import's orders: not the buyer's contact columns, which ingest reads out of
# each order's receiver for segmentation.
FEED_COLUMNS = tuple(
    (name, kind)
    for name, kind in IMPORT_FEED_COLUMNS
    if name
    in {
        "id",
        "customer_id",
        "status",
        "paid_fen",
        "refunded_fen",
        "placed_at",
        "completed_at",
        "source_modified_at",
    }
)
_ROUND = {"floor": "floor", "ceil": "ceil", "round": "round"}


def _points(program: ProgramSettings, kept: str) -> str:
    return f"{_ROUND[program.rounding]}(greatest({kept}, 0) * CAST(:rate AS numeric) / 100)::bigint"


# Orders' points, booked: ledger entries, lots, balances and one `loyalty.points_changed` per member.
_CREDIT = f"""
    WITH landed AS (
        {{orders}}
        RETURNING customer_id, order_id, points_available, placed_at
    ), booked AS (
        INSERT INTO loyalty.points_ledger (shop_id, customer_id, kind, points, reference, note)
        SELECT :shop, customer_id, 'earn', points_available, 'order:' || order_id, :reference
        FROM landed WHERE points_available > 0
        ON CONFLICT (shop_id, kind, reference) DO NOTHING
        RETURNING id, customer_id, points
    ), lots AS (
        INSERT INTO loyalty.points_lots
            (shop_id, customer_id, entry_id, points, remaining, earned_at, expires_at)
        SELECT :shop, customer_id, id, points, points, :as_of, CAST(:expires_at AS timestamptz)
        FROM booked
        RETURNING customer_id, points
    ), per_member AS (
        SELECT customer_id, sum(points) AS points FROM lots GROUP BY customer_id
    ), moved AS (
        UPDATE loyalty.members m
        SET points_balance = m.points_balance + p.points,
            lifetime_earned = m.lifetime_earned + p.points,
            updated_at = now()
        FROM per_member p WHERE m.shop_id = :shop AND m.customer_id = p.customer_id
        RETURNING m.customer_id, p.points, m.points_balance, m.points_pending
    )
    INSERT INTO loyalty.outbox (event_id, topic, key, event_type, shop_id, envelope)
    SELECT (e->>'event_id')::uuid, :topic, :shop || ':' || customer_id, '{POINTS_CHANGED}', :shop, e
    FROM (SELECT customer_id, {
    envelope_sql(
        "loyalty",
        POINTS_CHANGED,
        "jsonb_build_object('customer_id', customer_id, 'delta', points, 'pending_delta', 0, "
        "'kind', 'earn', 'reference', CAST(:reference AS text), 'balance', points_balance, "
        "'pending', points_pending)",
    )
} AS e FROM moved) x
"""  # noqa: S608 - the envelope expression is ours, values are bound


async def absorb(
    session: AsyncSession, shop_id: str, table: str, import_id: str, program: ProgramSettings, award: bool
) -> None:
    now = clock.now()
    params = {
        "shop": shop_id,
        "rate": str(program.earn_rate),
        "reference": f"import:{import_id}",
        "as_of": now,
    }
    points = _points(program, "paid_fen - refunded_fen")
    # Members who exist already are locked first, in a fixed order, as every ledger change locks them.
    # The ones this import adds need no lock (nobody sees them before it commits, and whoever adds the
    # same member waits for it): a first import's 316,812 new members cost 1.3 s to lock. A member
    # added live in between is locked by the update that credits it.
    await session.execute(
        text(
            f"""
            SELECT 1 FROM loyalty.members
            WHERE shop_id = :shop AND customer_id IN (SELECT customer_id FROM {table})
            ORDER BY customer_id FOR UPDATE
            """  # noqa: S608 - the table name is ours
        ),
        params,
    )
    await session.execute(
        text(
            f"""
            INSERT INTO loyalty.members (shop_id, customer_id)
            SELECT DISTINCT :shop, customer_id FROM {table} ORDER BY 2
            ON CONFLICT DO NOTHING
            """  # noqa: S608 - the table name is ours
        ),
        params,
    )
    # The statements below join the members just added (a million, maybe into an empty table): planned
    # with the statistics from before, a nested loop over them took minutes.
    await session.execute(text("ANALYZE loyalty.members"))
    # Orders already known from live events keep their state (their events were newer or equal).
    earned = f"CASE WHEN :award AND status = 'completed' THEN {points} ELSE 0 END"
    insert = f"""
        INSERT INTO loyalty.orders AS o
            (shop_id, order_id, customer_id, status, paid_fen, refunded_fen, completed, placed_at,
             source_modified_at, points_available, points_pending)
        SELECT :shop, id, customer_id, status, paid_fen, refunded_fen,
               status = 'completed' OR completed_at IS NOT NULL, placed_at, source_modified_at, {earned}, 0
        FROM {table}
    """  # noqa: S608 - the table name and the rounding function are ours, values are bound
    upsert = insert + " ON CONFLICT (shop_id, order_id) DO NOTHING"
    params |= {"award": award, "topic": Topic.LOYALTY.value, "expires_at": program.expires_at(now)}
    # A shop's first import (no orders yet) inserts plainly, as ingest's landing does; history without
    # points is only the orders, where the points' chain of inserts would hold every order's row.
    if award:
        insert, upsert = _CREDIT.replace("{orders}", insert), _CREDIT.replace("{orders}", upsert)
    first = not await session.scalar(
        text("SELECT EXISTS (SELECT 1 FROM loyalty.orders WHERE shop_id = :shop)"), params
    )
    if not first or await insert_plainly(session, insert, params) is None:
        await session.execute(text(upsert), params)
    await session.execute(text("ANALYZE loyalty.orders"))  # as above: the tier count reads them all
    await tiers.evaluate(session, shop_id, program, only_customers_in=table)
