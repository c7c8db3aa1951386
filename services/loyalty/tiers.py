"""Set-based tier evaluation, for many members at once: after a history import (upwards only), when a
shop sets or changes its tiers (existing members placed upwards, in chunks, in the background) and in
the scheduled re-evaluation of programmes with a window and downgrades allowed.

One statement computes each member's qualifying spend and orders, the level they reach, updates the
members whose level changes and writes their `loyalty.tier_changed` events.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.loyalty import TIER_CHANGED
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.db import Database
from laoke.kit.outbox import envelope_sql
from services.loyalty.program import ProgramSettings


async def evaluate(
    session: AsyncSession,
    shop_id: str,
    program: ProgramSettings,
    *,
    only_customers_in: str | None = None,
    few: bool = False,
    allow_down: bool = False,
) -> int:
    """Re-evaluate the tiers of the shop's members (or of those whose ids are in the temp table
    `only_customers_in`); returns how many changed. `few`: that table holds a small share of the
    shop's members, so their orders are read by member instead of summing all of the shop's."""
    if not program.tiers:
        return 0
    tiers = program.tiers
    now = clock.now()
    level = " ".join(
        f"WHEN spend >= {t.min_spend_fen} AND orders >= {t.min_orders} THEN {t.level}"
        for t in reversed(tiers)
    )
    # Tier names travel as a bound array indexed by level, never as SQL text.
    names = [""] * max(t.level for t in tiers)
    for t in tiers:
        names[t.level - 1] = t.name
    since = "AND o.placed_at >= :since" if program.reevaluation_days else ""
    scope = (
        f"AND m.customer_id IN (SELECT customer_id FROM {only_customers_in})"  # noqa: S608 - our temp table
        if only_customers_in
        else ""
    )
    of_few = (
        f"AND o.customer_id IN (SELECT customer_id FROM {only_customers_in})"  # noqa: S608 - our temp table
        if only_customers_in and few
        else ""
    )
    moves = "r.level <> r.old" if allow_down else "r.level > r.old"
    row = (
        await session.execute(
            text(
                f"""
                WITH qualifying AS (
                    SELECT o.customer_id, sum(o.paid_fen - o.refunded_fen) AS spend, count(*) AS orders
                    FROM loyalty.orders o
                    WHERE o.shop_id = :shop AND o.completed AND o.paid_fen > o.refunded_fen {since} {of_few}
                    GROUP BY o.customer_id
                ), reached AS (
                    SELECT m.customer_id, m.tier_level AS old, CASE {level} ELSE 0 END AS level
                    FROM (SELECT m.customer_id, m.tier_level, coalesce(q.spend, 0) AS spend,
                                 coalesce(q.orders, 0) AS orders
                          FROM loyalty.members m LEFT JOIN qualifying q USING (customer_id)
                          WHERE m.shop_id = :shop {scope}) m
                ), changed AS (
                    UPDATE loyalty.members m
                    SET tier_level = r.level, tier_changed_at = :as_of, updated_at = now()
                    FROM reached r
                    WHERE m.shop_id = :shop AND m.customer_id = r.customer_id AND {moves}
                    RETURNING m.customer_id, r.level, r.old
                ), announced AS (
                    INSERT INTO loyalty.outbox (event_id, topic, key, event_type, shop_id, envelope)
                    SELECT (e->>'event_id')::uuid, :topic, :shop || ':' || customer_id, '{
                    TIER_CHANGED
                }', :shop, e
                    FROM (SELECT customer_id, {
                    envelope_sql(
                        "loyalty",
                        TIER_CHANGED,
                        "jsonb_build_object('customer_id', customer_id, 'from_level', nullif(old, 0), "
                        "'to_level', level, 'tier_name', coalesce((CAST(:names AS text[]))[level], ''))",
                    )
                } AS e FROM changed) x
                    RETURNING 1
                )
                SELECT count(*) AS changed FROM announced
                """  # noqa: S608 - thresholds and levels are validated integers, the table is ours
            ),
            {
                "shop": shop_id,
                "as_of": now,
                "topic": Topic.LOYALTY.value,
                "names": names,
                **(
                    {"since": now - timedelta(days=program.reevaluation_days)}
                    if program.reevaluation_days
                    else {}
                ),
            },
        )
    ).one()
    return int(row.changed)


PLACEMENT_CHUNK = 20_000
_PENDING = text(
    "SELECT shop_id, settings, placed_after FROM loyalty.programs WHERE placed_after IS NOT NULL "
    "ORDER BY shop_id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_NEXT_MEMBERS = text(
    """
    INSERT INTO to_place
    SELECT customer_id FROM loyalty.members WHERE shop_id = :shop AND customer_id > :after
    ORDER BY customer_id LIMIT :chunk
    """
)
# In key order, as every ledger change locks members: a placement never deadlocks with an order.
_LOCK_PLACING = text(
    """
    SELECT count(*), max(customer_id) FROM (
        SELECT m.customer_id FROM loyalty.members m
        WHERE m.shop_id = :shop AND m.customer_id IN (SELECT customer_id FROM to_place)
        ORDER BY m.customer_id FOR UPDATE
    ) locked
    """
)


async def place_members(db: Database) -> int:
    """Place the existing members of shops whose tiers changed (`programs.placed_after` set by
    `PUT /program`), a chunk of members per transaction, upwards only; returns how many moved. The
    chunk's transaction holds the programme row, so another change of the tiers waits for it and then
    starts the placement over; a crash resumes after the last chunk committed."""
    moved = 0
    while True:
        async with db.transaction() as session:
            pending = (await session.execute(_PENDING)).one_or_none()
            if pending is None:
                return moved
            shop = {"shop": pending.shop_id}
            await session.execute(
                text("CREATE TEMP TABLE to_place (customer_id text PRIMARY KEY) ON COMMIT DROP")
            )
            await session.execute(
                _NEXT_MEMBERS, shop | {"after": pending.placed_after, "chunk": PLACEMENT_CHUNK}
            )
            count, last = (await session.execute(_LOCK_PLACING, shop)).one()
            settings = ProgramSettings.model_validate(pending.settings)
            if count:
                await session.execute(text("ANALYZE to_place"))
                moved += await evaluate(
                    session, pending.shop_id, settings, only_customers_in="to_place", few=True
                )
            await session.execute(
                text("UPDATE loyalty.programs SET placed_after = :after WHERE shop_id = :shop"),
                shop | {"after": last if count == PLACEMENT_CHUNK else None},
            )
