"""RFM scoring: every profile's window counts, scores, class and lifecycle label (their meaning and a
shop's thresholds: services/segmentation/rfm_config.py).

Everything is computed set-based in one statement, for one customer on each order event or for a
whole shop on the schedule and on a config change, and every change of an existing label is announced
through the outbox in the same statement. A customer's first scoring is not an event (a history import
would otherwise announce a million of them); it shows in the profile.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import PAID_STATUSES
from laoke.contracts.topics import Topic
from laoke.kit.outbox import envelope_sql
from services.segmentation.rfm_config import CLASSES, HIGH_SCORE, RfmSettings

_PAID = ", ".join(f"'{s.value}'" for s in PAID_STATUSES)
_CLASS_SQL = " ".join(
    f"WHEN {'' if r else 'NOT '}r_high AND {'' if f else 'NOT '}f_high AND {'' if m else 'NOT '}m_high "
    f"THEN '{cls.value}'"
    for (r, f, m), cls in CLASSES.items()
)


def _envelope(event_type: str, payload: str) -> str:
    return envelope_sql("segmentation", event_type, payload)


# The look-back window's paid orders of the selected customers, counted from their orders; also when
# that count next changes by itself: when the first counted order leaves the window, or an order placed
# after `as_of` enters it.
_WINDOW_COUNT = """count(o.order_id) FILTER (WHERE o.placed_at <= :as_of) AS f,
           coalesce(sum(o.paid_fen - o.refunded_fen) FILTER (WHERE o.placed_at <= :as_of), 0) AS m,
           least(min(o.placed_at) FILTER (WHERE o.placed_at <= :as_of) + make_interval(secs => :window_secs),
                 min(o.placed_at) FILTER (WHERE o.placed_at > :as_of)) AS recount_at"""
_COUNT = f"""
    SELECT {{columns}},
           {_WINDOW_COUNT}
    FROM segmentation.profiles p
    LEFT JOIN segmentation.profile_orders o
      ON o.shop_id = p.shop_id AND o.customer_id = p.customer_id AND o.status IN ({_PAID})
     AND o.placed_at >= :window_start
    WHERE p.shop_id = :shop AND {{which}}
    GROUP BY p.shop_id, p.customer_id"""  # noqa: S608 - constants of this module only
# The scheduled refresh recounts only profiles whose count has moved (or was never taken).
_RECOUNT_DUE = "(p.rfm_orders IS NULL OR p.rfm_recount_at <= :as_of)"
_KEPT = "(p.rfm_orders IS NOT NULL AND (p.rfm_recount_at <= :as_of) IS NOT TRUE)"  # exactly the others

# A profile's scores and lifecycle label from its facts: `days` since its last paid order, the window's
# count `f` and spend `m`, `first_order_at` and `last_order_at`. Shared by every rescore and by the
# profiles a history import creates (services/segmentation/repository.py), which are written scored.
SCORES = """
        CASE WHEN last_order_at IS NULL THEN NULL
             WHEN days <= (CAST(:recency AS int[]))[1] THEN 5 WHEN days <= (CAST(:recency AS int[]))[2] THEN 4
             WHEN days <= (CAST(:recency AS int[]))[3] THEN 3 WHEN days <= (CAST(:recency AS int[]))[4] THEN 2
             ELSE 1 END AS r,
        CASE WHEN last_order_at IS NULL THEN NULL
             WHEN f >= (CAST(:frequency AS int[]))[4] THEN 5 WHEN f >= (CAST(:frequency AS int[]))[3] THEN 4
             WHEN f >= (CAST(:frequency AS int[]))[2] THEN 3 WHEN f >= (CAST(:frequency AS int[]))[1] THEN 2
             ELSE 1 END AS fs,
        CASE WHEN last_order_at IS NULL THEN NULL
             WHEN m >= (CAST(:monetary AS bigint[]))[4] THEN 5
             WHEN m >= (CAST(:monetary AS bigint[]))[3] THEN 4
             WHEN m >= (CAST(:monetary AS bigint[]))[2] THEN 3
             WHEN m >= (CAST(:monetary AS bigint[]))[1] THEN 2
             ELSE 1 END AS ms,
        CASE WHEN last_order_at IS NULL THEN 'prospect'
             WHEN days <= :active_days AND first_order_at >= :active_start THEN 'new'
             WHEN days <= :active_days THEN 'active'
             WHEN days <= :sleeping_days THEN 'sleeping'
             ELSE 'churned' END AS lifecycle"""
# The RFM class (`segment`) of rows with `r`, `fs` and `ms`: `SELECT *, {CLASS} FROM ({CLASS_INPUT} …)`.
CLASS = f"CASE WHEN r IS NULL THEN NULL {_CLASS_SQL} END AS segment"
CLASS_INPUT = (
    f"SELECT *, r >= {HIGH_SCORE} AS r_high, fs >= {HIGH_SCORE} AS f_high, ms >= {HIGH_SCORE} AS m_high"
)
# Days since the last order as the scores count them.
DAYS = "floor(extract(epoch FROM (:as_of - {last})) / 86400)::int"

# How the update finds the changed profiles. A whole shop: joined on the shop. Some customers: by key,
# one lookup each. Their shop is taken from `changes`, whose values the planner cannot see: joined on
# `:shop`, a shop the statistics did not know yet (a new shop's first minute, before autovacuum
# analysed it, is estimated at one row) made walking the whole shop look as cheap as a lookup, and
# every run of events walked it (5 ms a run for a shop of 2,600 buyers, growing with the shop).
_BY_SHOP = "p.shop_id = :shop AND p.customer_id = c.customer_id"
_BY_KEY = "p.shop_id = c.shop_id AND p.customer_id = c.customer_id"


def _score(find: str) -> str:
    """Score, compare, update, and announce changes, in one statement: the tail of each statement below,
    after its `facts` CTE has given each profile's window count (`f`, `m`, `recount_at`) and stored
    labels."""
    return f"""
scored AS (
    SELECT *,{SCORES}
    FROM facts
    OFFSET 0  -- computed once per row: inlined, every CASE would be re-evaluated inside the next ones
), classed AS (
    SELECT *, {CLASS} FROM ({CLASS_INPUT} FROM scored) x
), changes AS MATERIALIZED (
    -- Usually a few rows of a million: found in one pass, then written by key (no join of the table
    -- with itself).
    SELECT CAST(:shop AS varchar) AS shop_id, customer_id, r, fs, ms, segment, lifecycle, f, m, recount_at,
           old_lifecycle, old_segment, old_r, old_f, old_m
    FROM classed c
    WHERE (c.old_r, c.old_f, c.old_m, c.old_segment, c.old_lifecycle, c.old_orders, c.old_spent,
           c.old_recount_at)
          IS DISTINCT FROM (c.r, c.fs, c.ms, c.segment, c.lifecycle, c.f, c.m, c.recount_at)
), updated AS (
    UPDATE segmentation.profiles p
    SET r_score = c.r, f_score = c.fs, m_score = c.ms, rfm_segment = c.segment, lifecycle = c.lifecycle,
        rfm_orders = c.f, rfm_spent_fen = c.m, rfm_recount_at = c.recount_at, scored_at = :as_of
    FROM changes c
    WHERE {find}
    RETURNING c.customer_id, c.old_lifecycle, c.lifecycle, c.old_segment, c.segment, c.r, c.fs, c.ms,
              (c.old_r, c.old_f, c.old_m, c.old_segment, c.old_lifecycle)
                  IS DISTINCT FROM (c.r, c.fs, c.ms, c.segment, c.lifecycle) AS rescored
), lifecycle_events AS (
    INSERT INTO segmentation.outbox (event_id, topic, key, event_type, shop_id, envelope)
    SELECT (e->>'event_id')::uuid, :topic, :shop || ':' || customer_id, 'customer.lifecycle_changed', :shop, e
    FROM (SELECT customer_id, {
        _envelope(
            "customer.lifecycle_changed",
            "jsonb_build_object('customer_id', customer_id, 'from', old_lifecycle, 'to', lifecycle)",
        )
    } AS e
          FROM updated WHERE old_lifecycle IS NOT NULL AND old_lifecycle IS DISTINCT FROM lifecycle) l
    RETURNING 1
), rfm_events AS (
    INSERT INTO segmentation.outbox (event_id, topic, key, event_type, shop_id, envelope)
    SELECT (e->>'event_id')::uuid, :topic, :shop || ':' || customer_id, 'customer.rfm_changed', :shop, e
    FROM (SELECT customer_id, {
        _envelope(
            "customer.rfm_changed",
            "jsonb_build_object("
            "'customer_id', customer_id, 'from', old_segment, 'to', segment, 'r', r, 'f', fs, 'm', ms)",
        )
    } AS e
          FROM updated WHERE old_segment IS NOT NULL AND old_segment IS DISTINCT FROM segment) s
    RETURNING 1
)
SELECT (SELECT count(*) FROM updated WHERE rescored) AS changed,
       (SELECT count(*) FROM lifecycle_events) AS lifecycle_changes,
       (SELECT count(*) FROM rfm_events) AS rfm_changes
"""  # noqa: S608 - every interpolated piece is a constant of this module; values are bound


_STORED = f"""p.customer_id, p.lifecycle AS old_lifecycle, p.rfm_segment AS old_segment, p.r_score AS old_r,
           p.f_score AS old_f, p.m_score AS old_m, p.rfm_orders AS old_orders, p.rfm_spent_fen AS old_spent,
           p.rfm_recount_at AS old_recount_at, p.first_order_at, p.last_order_at,
           {DAYS.format(last="p.last_order_at")} AS days"""

# Some customers (those of a run of order events), counted from their orders: each profile and its
# orders looked up by key. `OFFSET 0` keeps each lookup a parameterised one, and the shop comes with
# each customer out of `unnest`, whose values the planner cannot see, for the reason given at `_BY_KEY`:
# given `:shop` (even through a subquery, which it folds), it preferred a smaller index on the shop
# alone and filtered the whole shop for each customer.
_RESCORE = text(
    f"""
WITH facts AS MATERIALIZED (
    SELECT {_STORED}, c.f, c.m, c.recount_at
    FROM unnest(CAST(:customers AS text[]), CAST(:shops AS text[])) AS w(customer_id, shop_id)
    CROSS JOIN LATERAL (
        SELECT * FROM segmentation.profiles p
        WHERE p.shop_id = w.shop_id AND p.customer_id = w.customer_id OFFSET 0
    ) p
    CROSS JOIN LATERAL (
        SELECT {_WINDOW_COUNT}
        FROM segmentation.profile_orders o
        WHERE o.shop_id = :shop AND o.customer_id = w.customer_id AND o.status IN ({_PAID})
          AND o.placed_at >= :window_start
        OFFSET 0
    ) c
), {_score(_BY_KEY)}"""  # noqa: S608 - constants of this module only
)

# A whole shop counted from its orders, with what scoring needs of each profile, into a table of its
# own first: a statement that writes runs on one core, while this one counts the shop's orders in
# parallel (7 s → 3.5 s for 10,000,000), and scoring then reads the profiles no more. The orders are
# counted per buyer before meeting the profiles: grouping the joined rows instead sorted a million wide
# rows on disk (5.2 s → 3.9 s for 1,000,000 profiles and 10,000,000 orders); same counts as `_COUNT`.
_COUNT_SHOP = text(
    f"""
CREATE TEMP TABLE rfm_counted AS
SELECT {_STORED}, coalesce(o.f, 0) AS f, coalesce(o.m, 0) AS m, o.recount_at
FROM segmentation.profiles p
LEFT JOIN (
    SELECT customer_id,
           count(*) FILTER (WHERE placed_at <= :as_of) AS f,
           sum(paid_fen - refunded_fen) FILTER (WHERE placed_at <= :as_of) AS m,
           least(min(placed_at) FILTER (WHERE placed_at <= :as_of) + make_interval(secs => :window_secs),
                 min(placed_at) FILTER (WHERE placed_at > :as_of)) AS recount_at
    FROM segmentation.profile_orders
    WHERE shop_id = :shop AND status IN ({_PAID}) AND placed_at >= :window_start
    GROUP BY customer_id
) o ON o.customer_id = p.customer_id
WHERE p.shop_id = :shop"""  # noqa: S608 - constants of this module only
)
_DROP_COUNTED = text("DROP TABLE rfm_counted")
_RESCORE_SHOP = text(f"WITH facts AS (SELECT * FROM rfm_counted), {_score(_BY_SHOP)}")  # noqa: S608 - constants

# The scheduled refresh: every profile scored from its kept count, recounting only those whose count
# has moved since. With nothing moved it reads no order at all.
_REFRESH = text(
    f"""
WITH counted AS MATERIALIZED ({_COUNT.format(columns="p.customer_id", which=_RECOUNT_DUE)}
), facts AS (
    SELECT {_STORED}, p.rfm_orders AS f, p.rfm_spent_fen AS m, p.rfm_recount_at AS recount_at
    FROM segmentation.profiles p
    WHERE p.shop_id = :shop AND {_KEPT}
    UNION ALL
    SELECT {_STORED}, c.f, c.m, c.recount_at
    FROM segmentation.profiles p JOIN counted c ON c.customer_id = p.customer_id
    WHERE p.shop_id = :shop
), {_score(_BY_SHOP)}"""  # noqa: S608 - constants of this module only
)

WHOLE_SHOP_WORK_MEM = "128MB"
_CURRENT_WORK_MEM = text("SELECT current_setting('work_mem')")
_SET_WORK_MEM = text("SELECT set_config('work_mem', :value, true)")  # until the transaction ends
_LAST_RUN = text("SELECT as_of FROM segmentation.rfm_runs WHERE shop_id = :shop")
_RECORD_RUN = text(
    "INSERT INTO segmentation.rfm_runs (shop_id, as_of) VALUES (:shop, :as_of) "
    "ON CONFLICT (shop_id) DO UPDATE SET as_of = excluded.as_of"
)


def score_parameters(settings: RfmSettings, as_of: datetime) -> dict[str, object]:
    """The values `SCORES`, `DAYS` and the window counts are bound to."""
    return {
        "as_of": as_of,
        "window_start": as_of - timedelta(days=settings.window_days),
        "window_secs": float(settings.window_days * 86400),
        "active_start": as_of - timedelta(days=settings.active_days),
        "recency": settings.recency_days,
        "frequency": settings.frequency,
        "monetary": settings.monetary_fen,
        "active_days": settings.active_days,
        "sleeping_days": settings.sleeping_days,
    }


async def rescore(
    session: AsyncSession,
    shop_id: str,
    settings: RfmSettings,
    as_of: datetime,
    customers: list[str] | None = None,
    *,
    incremental: bool = False,
) -> tuple[int, int, int]:
    """Rescore one shop (or some of its customers) as of a moment; returns (changed, lifecycle
    changes, rfm class changes).

    Some customers, or a whole shop by default, are counted from their orders. `incremental` (the
    scheduled refresh of a whole shop) scores every profile from its kept window count and recounts
    only those whose count has moved since; it falls back to counting everything when the shop has no
    earlier whole-shop run or the clock went back since. Kept counts are current because every change
    to a buyer's orders rescores that buyer, and a change of thresholds or window rescores the shop."""
    wanted = sorted(set(customers)) if customers is not None else None  # each once, in key order
    params = score_parameters(settings, as_of) | {
        "shop": shop_id,
        "customers": wanted,
        "shops": [shop_id] * len(wanted) if wanted is not None else None,
        "topic": Topic.SEGMENTATION.value,
    }
    whole_shop = customers is None
    if whole_shop and incremental:
        last = await session.scalar(_LAST_RUN, {"shop": shop_id})
        incremental = last is not None and last <= as_of
    if not whole_shop:
        row = (await session.execute(_RESCORE, params)).one()
    elif incremental:
        row = (await session.execute(_REFRESH, params)).one()
    else:
        # A million profiles' counts hashed and joined in memory rather than sorted on disk in batches
        # (15 s → 11 s for 1,000,000 profiles); for this statement pair only.
        default = await session.scalar(_CURRENT_WORK_MEM)
        await session.execute(_SET_WORK_MEM, {"value": WHOLE_SHOP_WORK_MEM})
        await session.execute(_COUNT_SHOP, params)
        row = (await session.execute(_RESCORE_SHOP, params)).one()
        await session.execute(_DROP_COUNTED)
        await session.execute(_SET_WORK_MEM, {"value": default})
    if whole_shop:
        await session.execute(_RECORD_RUN, {"shop": shop_id, "as_of": as_of})
        await _refresh_statistics(session, row.changed)
    return row.changed, row.lifecycle_changes, row.rfm_changes


async def _refresh_statistics(session: AsyncSession, changed: int) -> None:
    """After a rescore that relabelled a good part of the profiles (a history import, a new preset),
    the planner's statistics still describe the labels before it: a customer list filtered by lifecycle
    then plans for a handful of rows and scans a million (0.4 s instead of 10 ms) until autovacuum
    catches up, a minute or more later. Refresh them with the rescore instead (a sample: ~0.2 s)."""
    if changed < 10_000:
        return
    rows = await session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST('segmentation.profiles' AS regclass)")
    )
    if changed > 0.1 * max(rows or 0, 0):  # autovacuum's own threshold for a fresh ANALYZE
        await session.execute(text("ANALYZE segmentation.profiles"))
