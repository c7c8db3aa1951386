"""Every query of the segmentation service. All of them are scoped by shop.

Hot statements are built once and take bound parameters (see services/ingest/repository.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.behaviour import BehaviourPayload
from laoke.contracts.customers import BuyerSnapshot
from laoke.contracts.imports import IMPORT_FEED_COLUMNS
from laoke.contracts.orders import PAID_STATUSES, OrderEventPayload
from laoke.kit.db import as_arrays, insert_plainly
from services.segmentation import rfm, rfm_config
from services.segmentation.models import (
    CustomerTag,
    GroupMember,
    Profile,
    ProfileBehaviour,
    ProfileOrder,
    SegmentMember,
)

_orders = ProfileOrder.__table__
_profiles = Profile.__table__

# Runs of events go in as arrays through `unnest`: one constant statement whatever the run's length,
# where an executemany costs SQLAlchemy a parameter set processed in Python per row (a fifth of the
# service's CPU under order load).
# An event older than what is stored changes nothing (events of one order can arrive out of order
# after a replay).
_RECORD_ORDERS = text(
    """
    INSERT INTO segmentation.profile_orders AS o
        (shop_id, order_id, customer_id, status, paid_fen, refunded_fen, placed_at, source_modified_at)
    SELECT :shop_id, v.* FROM unnest(CAST(:order_id AS text[]), CAST(:customer_id AS text[]),
        CAST(:status AS text[]), CAST(:paid_fen AS bigint[]), CAST(:refunded_fen AS bigint[]),
        CAST(:placed_at AS timestamptz[]), CAST(:source_modified_at AS timestamptz[]))
        AS v(order_id, customer_id, status, paid_fen, refunded_fen, placed_at, source_modified_at)
    ON CONFLICT (shop_id, order_id) DO UPDATE SET
        customer_id = excluded.customer_id, status = excluded.status, paid_fen = excluded.paid_fen,
        refunded_fen = excluded.refunded_fen, placed_at = excluded.placed_at,
        source_modified_at = excluded.source_modified_at
    WHERE o.source_modified_at <= excluded.source_modified_at
    """
)

_PAID = ", ".join(f"'{s.value}'" for s in PAID_STATUSES)
# Aggregates of some customers, recomputed from their orders in one statement.
_RECOMPUTE = text(
    f"""
    INSERT INTO segmentation.profiles AS p
        (shop_id, customer_id, orders_count, total_spent_fen, first_order_at, last_order_at,
         refunded_fen, refunds_count)
    SELECT :shop_id, c.customer_id, o.*
    FROM unnest(CAST(:customers AS text[])) AS c(customer_id)
    -- One lookup per customer. As a join, a shop the statistics did not know yet (estimated at a row)
    -- made merging with the shop's every order look cheapest, and each run of events read them all.
    CROSS JOIN LATERAL (
        SELECT count(o.order_id) FILTER (WHERE o.status IN ({_PAID})),
               coalesce(sum(o.paid_fen - o.refunded_fen) FILTER (WHERE o.status IN ({_PAID})), 0),
               min(o.placed_at) FILTER (WHERE o.status IN ({_PAID})),
               max(o.placed_at) FILTER (WHERE o.status IN ({_PAID})),
               coalesce(sum(o.refunded_fen), 0), count(o.order_id) FILTER (WHERE o.refunded_fen > 0)
        FROM segmentation.profile_orders o
        WHERE o.shop_id = :shop_id AND o.customer_id = c.customer_id
        OFFSET 0
    ) o
    ON CONFLICT (shop_id, customer_id) DO UPDATE SET
        orders_count = excluded.orders_count, total_spent_fen = excluded.total_spent_fen,
        first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at,
        refunded_fen = excluded.refunded_fen, refunds_count = excluded.refunds_count, updated_at = now()
    """  # noqa: S608 - the statuses are constants; values are bound
)
# Who the buyer is, from an order or behaviour event: fills what is known, never overwrites a field
# the shop edited by hand (`edited_fields`), and remembers every channel the buyer came through.
_KEEP_UNLESS_EDITED = ("nick", "name", "mobile", "email", "province", "city")
_TOUCH_COLUMNS = (
    "customer_id",
    "nick",
    "name",
    "mobile",
    "email",
    "province",
    "city",
    "channel",
    "external_id",
)
_TOUCH = text(
    f"""
    INSERT INTO segmentation.profiles AS p
        (shop_id, customer_id, nick, name, mobile, email, province, city, channels, external_ids)
    SELECT :shop_id, v.customer_id, v.nick, v.name, v.mobile, v.email, v.province, v.city,
           CASE WHEN v.channel IS NULL THEN '{{}}'::varchar[] ELSE ARRAY[v.channel]::varchar[] END,
           CASE WHEN v.external_id IS NULL THEN '{{}}'::jsonb
                ELSE jsonb_build_object(v.channel, v.external_id) END
    FROM unnest({", ".join(f"CAST(:{c} AS text[])" for c in _TOUCH_COLUMNS)}) AS v({
        ", ".join(_TOUCH_COLUMNS)
    })
    ON CONFLICT (shop_id, customer_id) DO UPDATE SET
        {
        ", ".join(
            f"{c} = CASE WHEN '{c}' = ANY(p.edited_fields) THEN p.{c} ELSE coalesce(excluded.{c}, p.{c}) END"
            for c in _KEEP_UNLESS_EDITED
        )
    },
        channels = CASE WHEN excluded.channels <@ p.channels THEN p.channels
                        ELSE p.channels || excluded.channels END,
        external_ids = p.external_ids || excluded.external_ids
    """  # noqa: S608 - column names are constants of this module; values are bound
)
# A merge: the surviving profile keeps its own facts and takes the other's where it has none.
_FOLD_PROFILE = text(
    f"""
    UPDATE segmentation.profiles t SET
        {", ".join(f"{c} = coalesce(t.{c}, s.{c})" for c in (*_KEEP_UNLESS_EDITED, "gender", "birthday"))},
        channels = ARRAY(SELECT DISTINCT unnest(t.channels || s.channels)),
        external_ids = s.external_ids || t.external_ids,
        edited_fields = ARRAY(SELECT DISTINCT unnest(t.edited_fields || s.edited_fields)),
        consent = s.consent || t.consent,
        attributes = s.attributes || t.attributes,
        last_seen_at = greatest(t.last_seen_at, s.last_seen_at)
    FROM segmentation.profiles s
    WHERE t.shop_id = :shop_id AND t.customer_id = :target
      AND s.shop_id = :shop_id AND s.customer_id = :source
    """  # noqa: S608 - column names are constants of this module
)
_ENSURE = text(
    "INSERT INTO segmentation.profiles (shop_id, customer_id) VALUES (:shop_id, :customer_id) "
    "ON CONFLICT DO NOTHING"
)
_SET_POINTS = text(
    """
    INSERT INTO segmentation.profiles AS p (shop_id, customer_id, points_balance)
    SELECT :shop_id, c, b FROM unnest(CAST(:customers AS text[]), CAST(:balances AS bigint[])) AS x(c, b)
    ON CONFLICT (shop_id, customer_id) DO UPDATE
    SET points_balance = excluded.points_balance, updated_at = now()
    """
)
_RECORD_BEHAVIOUR = text(
    """
    INSERT INTO segmentation.profile_behaviour (shop_id, customer_id, kind, item_id, occurred_at, item_title)
    VALUES (:shop_id, :customer_id, :kind, :item_id, :occurred_at, :item_title)
    ON CONFLICT DO NOTHING
    """
)
_BEHAVIOUR_COUNTS = text(
    """
    UPDATE segmentation.profiles p SET
        favorites_count = b.favorites, carts_count = b.carts,
        last_seen_at = greatest(p.last_seen_at, b.last_seen)
    FROM (SELECT count(*) FILTER (WHERE kind IN ('favorite_item', 'favorite_shop')) AS favorites,
                 count(*) FILTER (WHERE kind = 'add_to_cart') AS carts, max(occurred_at) AS last_seen
          FROM segmentation.profile_behaviour WHERE shop_id = :shop_id AND customer_id = :customer_id) b
    WHERE p.shop_id = :shop_id AND p.customer_id = :customer_id
    """
)
# What `absorb_import` reads of an import's orders (not their amounts before refunds, items or other times).
IMPORT_COLUMNS = tuple(
    (name, kind)
    for name, kind in IMPORT_FEED_COLUMNS
    if name not in {"external_order_id", "currency", "total_fen", "item_count", "paid_at", "completed_at"}
)
_LOCK_SHOP = text("SELECT pg_advisory_xact_lock(hashtextextended(:shop_id, 1))")
_SHOP_HAS_PROFILES = text("SELECT EXISTS (SELECT 1 FROM segmentation.profiles WHERE shop_id = :shop)")
_SHOP_HAS_ORDERS = text("SELECT EXISTS (SELECT 1 FROM segmentation.profile_orders WHERE shop_id = :shop_id)")
# Shared shop lock and exclusive customer lock in one round trip (this runs on every order event).
# Shared shop lock, then exclusive customer locks in a fixed order (two batches never deadlock).
_LOCK_CUSTOMERS = text(
    """
    SELECT pg_advisory_xact_lock_shared(hashtextextended(:shop_id, 1)),
           (SELECT count(pg_advisory_xact_lock(hashtextextended(:shop_id || ':' || c, 2)))
            FROM (SELECT unnest(CAST(:customers AS text[])) AS c ORDER BY 1) ordered)
    """
)
_GET_PROFILE = select(Profile).where(
    Profile.shop_id == bindparam("shop_id"), Profile.customer_id == bindparam("customer_id")
)


class ProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, customer_id: str) -> Profile | None:
        return await self.session.scalar(_GET_PROFILE, {"shop_id": shop_id, "customer_id": customer_id})

    async def touch(self, shop_id: str, buyers: list[tuple[str, str | None, BuyerSnapshot | None]]) -> None:
        """Create profiles that are new and take in what events say about their buyers, in event
        order: `(customer_id, channel, buyer snapshot)`."""
        # One row per customer and channel: later events' known fields win over earlier ones.
        merged: dict[tuple[str, str | None], BuyerSnapshot] = {}
        for customer_id, channel, snapshot in buyers:
            earlier = merged.get((customer_id, channel))
            if earlier is None or snapshot is None:
                merged[(customer_id, channel)] = earlier or snapshot or BuyerSnapshot()
            else:
                merged[(customer_id, channel)] = earlier.model_copy(
                    update=snapshot.model_dump(exclude_none=True)
                )
        # A statement may not touch a row twice: a buyer seen through two channels in one run takes a
        # second round (rare), in customer order each time so that runs lock rows in one order.
        rounds: list[list[tuple[str | None, ...]]] = []
        seen: dict[str, int] = {}
        for (customer_id, channel), buyer in sorted(merged.items(), key=lambda item: item[0][0]):
            n = seen[customer_id] = seen.get(customer_id, -1) + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(
                (
                    customer_id,
                    buyer.nick,
                    buyer.receiver_name,
                    buyer.mobile,
                    buyer.email,
                    buyer.province,
                    buyer.city,
                    channel,
                    buyer.external_id if channel else None,
                )
            )
        for rows in rounds:
            await self.session.execute(_TOUCH, {"shop_id": shop_id} | as_arrays(_TOUCH_COLUMNS, rows))

    async def record_behaviour(self, shop_id: str, event: BehaviourPayload) -> None:
        params = {"shop_id": shop_id, "customer_id": event.customer_id}
        await self.session.execute(
            _RECORD_BEHAVIOUR,
            params
            | {
                "kind": event.kind.value,
                "item_id": event.item_id or "",
                "occurred_at": event.occurred_at,
                "item_title": event.item_title,
            },
        )
        await self.session.execute(_BEHAVIOUR_COUNTS, params)

    async def set_loyalty(self, shop_id: str, customer_id: str, **values: object) -> None:
        """Tier and points as loyalty announced them (loyalty owns them; this is a copy for segments)."""
        await self.session.execute(_ENSURE, {"shop_id": shop_id, "customer_id": customer_id})
        await self.session.execute(
            update(_profiles)
            .where(_profiles.c.shop_id == shop_id, _profiles.c.customer_id == customer_id)
            .values(**values, updated_at=func.now())
        )

    async def rename_tier(self, shop_id: str, level: int, name: str) -> int:
        """Every member of a tier level takes its new name; how many profiles changed."""
        changed = await self.session.execute(
            update(_profiles)
            .where(
                _profiles.c.shop_id == shop_id,
                _profiles.c.tier_level == level,
                _profiles.c.tier.is_distinct_from(name),
            )
            .values(tier=name, updated_at=func.now())
        )
        return int(changed.rowcount or 0)  # type: ignore[attr-defined]

    async def set_points(self, shop_id: str, balances: dict[str, int]) -> None:
        """Points balances as loyalty announced them, `{customer_id: balance}`, in one statement."""
        await self.session.execute(
            _SET_POINTS,
            {"shop_id": shop_id, "customers": list(balances), "balances": list(balances.values())},
        )

    async def set_points_from(self, shop_id: str, table: str) -> None:
        """Balances from a temp table `(customer_id, balance)` (a loyalty expiry run's feed)."""
        await self.session.execute(
            text(
                f"""
                UPDATE segmentation.profiles p SET points_balance = f.balance, updated_at = now()
                FROM {table} f WHERE p.shop_id = :shop AND p.customer_id = f.customer_id
                """  # noqa: S608 - the table name is ours
            ),
            {"shop": shop_id},
        )

    async def set_consent(self, shop_id: str, customer_id: str, channel: str, subscribed: bool) -> None:
        await self.session.execute(_ENSURE, {"shop_id": shop_id, "customer_id": customer_id})
        await self.session.execute(
            update(_profiles)
            .where(_profiles.c.shop_id == shop_id, _profiles.c.customer_id == customer_id)
            .values(consent=_profiles.c.consent.op("||")(func.jsonb_build_object(channel, subscribed)))
        )

    async def set_attributes(self, shop_id: str, customer_id: str, attributes: dict[str, Any]) -> None:
        """The newest answer of each key replaces the older one; other keys stay."""
        await self.session.execute(_ENSURE, {"shop_id": shop_id, "customer_id": customer_id})
        await self.session.execute(
            update(_profiles)
            .where(_profiles.c.shop_id == shop_id, _profiles.c.customer_id == customer_id)
            .values(
                attributes=_profiles.c.attributes.op("||")(bindparam("attributes", attributes, type_=JSONB))
            )
        )

    async def record_orders(self, shop_id: str, orders: list[OrderEventPayload]) -> None:
        # One row per order: the newest state of each (a run often holds an order's paid and completed).
        newest: dict[str, OrderEventPayload] = {}
        for order in orders:
            known = newest.get(order.order_id)
            if known is None or order.source_modified_at >= known.source_modified_at:
                newest[order.order_id] = order
        kept = sorted(newest.values(), key=lambda order: order.order_id)
        await self.session.execute(
            _RECORD_ORDERS,
            {
                "shop_id": shop_id,
                "order_id": [o.order_id for o in kept],
                "customer_id": [o.customer_id for o in kept],
                "status": [o.status.value for o in kept],
                "paid_fen": [o.paid_fen for o in kept],
                "refunded_fen": [o.refunded_fen for o in kept],
                "placed_at": [o.placed_at for o in kept],
                "source_modified_at": [o.source_modified_at for o in kept],
            },
        )

    async def recompute(self, shop_id: str, customer_ids: list[str]) -> None:
        """Set-based recomputation of profiles' aggregates from their orders: always exact, whatever
        order the events arrived in.

        Two transactions recomputing one customer (an order event and a merge fold, say) would each
        aggregate without the other's uncommitted order and the later commit would win with a stale
        total; the lock makes the second wait and aggregate after the first commits (found by the merge
        test). The shop lock is shared here and taken exclusively by a history import's bulk recompute.
        """
        params = {"shop_id": shop_id, "customers": sorted(set(customer_ids))}
        await self.session.execute(_LOCK_CUSTOMERS, params)
        await self.session.execute(_RECOMPUTE, params)

    async def absorb_import(
        self, shop_id: str, table: str, settings: rfm_config.RfmSettings, as_of: datetime
    ) -> None:
        """Fold a history import's orders (in temp table `table`) into the projection, then recompute
        every affected profile in one statement. Newer stored states win, as with events.

        Profiles the import creates are written already scored as of `as_of`: scored afterwards, each
        would be written twice, and a rescore of 316,812 new profiles took 7.7 s. Profiles that existed
        keep their scores here, so that the rescore after this announces their labels' changes."""
        await self.session.execute(_LOCK_SHOP, {"shop_id": shop_id})
        # A million-row sort and aggregate: in memory rather than spilled to disk.
        await self.session.execute(text("SET LOCAL work_mem = '256MB'"))
        paid = ", ".join(f"'{s.value}'" for s in PAID_STATUSES)
        in_window = f"o.status IN ({paid}) AND o.placed_at >= :window_start AND o.placed_at <= :as_of"
        after_window = f"o.status IN ({paid}) AND o.placed_at > :as_of"
        # Orders already known (from events, or an earlier import) first, then the new ones: with the
        # shop locked no order can arrive in between, and a plain insert of a million orders took 9.7 s
        # where INSERT … ON CONFLICT took 13.3 s. A shop without orders here (its first import) skips
        # both the update and the anti join: on a table vacuumed while empty (0 pages) the planner
        # rescanned the whole table for each new order, a scan that grows with every row inserted
        # (20,000 orders 3.6 s, a million would take hours).
        if await self.session.scalar(_SHOP_HAS_ORDERS, {"shop_id": shop_id}):
            await self.session.execute(
                text(
                    f"""
                    UPDATE segmentation.profile_orders p
                    SET customer_id = t.customer_id, status = t.status, paid_fen = t.paid_fen,
                        refunded_fen = t.refunded_fen, placed_at = t.placed_at,
                        source_modified_at = t.source_modified_at
                    FROM {table} t
                    WHERE p.shop_id = :shop AND p.order_id = t.id
                      AND p.source_modified_at <= t.source_modified_at
                    """  # noqa: S608 - the table name is ours, values are bound
                ),
                {"shop": shop_id},
            )
            new_only = """
                WHERE NOT EXISTS (
                    SELECT FROM segmentation.profile_orders p
                    WHERE p.shop_id = CAST(:shop AS text) AND p.order_id = t.id
                )"""
        else:
            new_only = ""
        await self.session.execute(
            text(
                f"""
                INSERT INTO segmentation.profile_orders
                    (shop_id, order_id, customer_id, status, paid_fen, refunded_fen, placed_at,
                     source_modified_at)
                SELECT CAST(:shop AS text), id, customer_id, status, paid_fen, refunded_fen, placed_at,
                       source_modified_at
                FROM {table} t{new_only}
                """  # noqa: S608 - the table name is ours, values are bound
            ),
            {"shop": shop_id},
        )
        # Counted before the profiles are computed from them: with the statistics from before the
        # import, the aggregate below was planned for ~1,500 orders, as a sort of a million.
        await self.session.execute(text("ANALYZE segmentation.profile_orders"))
        # The buyer as their latest imported order names them. Sorted by a hash of the customer id
        # first: one import's ids share their first 12 characters, and sorting by the ids themselves
        # compared them whole; the profiles are still written in id order, the index's order. Their
        # orders are found by the temp table's buyers, not `latest`'s: the planner counts the table's
        # distinct buyers (ANALYZEd) but guesses 200 for a CTE, and so walked the buyer index once per
        # buyer instead of one pass over the shop's orders (a million orders: 15.1 s → 11.7 s).
        contact = ", ".join(
            f"{c} = CASE WHEN '{c}' = ANY(p.edited_fields) THEN p.{c} ELSE coalesce(excluded.{c}, p.{c}) END"
            for c in _KEEP_UNLESS_EDITED
            if c != "email"
        )
        insert = f"""
                WITH latest AS (
                    SELECT DISTINCT ON (hashtext(customer_id), customer_id)
                           customer_id, channel, buyer_nick, receiver_name, mobile, province, city
                    FROM {table} ORDER BY hashtext(customer_id), customer_id, placed_at DESC
                ), totals AS (
                    SELECT o.customer_id,
                           count(*) FILTER (WHERE o.status IN ({paid})) AS orders_count,
                           coalesce(sum(o.paid_fen - o.refunded_fen) FILTER (WHERE o.status IN ({paid})), 0)
                               AS total_spent_fen,
                           min(o.placed_at) FILTER (WHERE o.status IN ({paid})) AS first_order_at,
                           max(o.placed_at) FILTER (WHERE o.status IN ({paid})) AS last_order_at,
                           coalesce(sum(o.refunded_fen), 0) AS refunded_fen,
                           count(*) FILTER (WHERE o.refunded_fen > 0) AS refunds_count,
                           -- The look-back window's count, as services/segmentation/rfm.py counts it.
                           count(*) FILTER (WHERE {in_window}) AS f,
                           coalesce(sum(o.paid_fen - o.refunded_fen) FILTER (WHERE {in_window}), 0) AS m,
                           least(min(o.placed_at) FILTER (WHERE {in_window})
                                     + make_interval(secs => :window_secs),
                                 min(o.placed_at) FILTER (WHERE {after_window}))
                               AS recount_at
                    FROM segmentation.profile_orders o
                    WHERE o.shop_id = :shop AND o.customer_id IN (SELECT customer_id FROM {table})
                    GROUP BY o.customer_id
                ), scored AS (
                    SELECT *,{rfm.SCORES}
                    FROM (SELECT *, {rfm.DAYS.format(last="last_order_at")} AS days FROM totals) t
                    OFFSET 0
                ), classed AS (
                    SELECT *, {rfm.CLASS} FROM ({rfm.CLASS_INPUT} FROM scored) x
                )
                INSERT INTO segmentation.profiles AS p
                    (shop_id, customer_id, nick, name, mobile, province, city, channels,
                     orders_count, total_spent_fen, first_order_at, last_order_at,
                     refunded_fen, refunds_count, r_score, f_score, m_score, rfm_segment, lifecycle,
                     rfm_orders, rfm_spent_fen, rfm_recount_at, scored_at)
                SELECT :shop, l.customer_id, l.buyer_nick, l.receiver_name, l.mobile, l.province, l.city,
                       ARRAY[l.channel], t.orders_count, t.total_spent_fen, t.first_order_at, t.last_order_at,
                       t.refunded_fen, t.refunds_count, t.r, t.fs, t.ms, t.segment, t.lifecycle,
                       t.f, t.m, t.recount_at, :as_of
                FROM latest l JOIN classed t USING (customer_id)
                ORDER BY l.customer_id
                """  # noqa: S608 - the table name, columns and statuses are ours, values are bound
        upsert = f"""{insert}
                ON CONFLICT (shop_id, customer_id) DO UPDATE SET
                    orders_count = excluded.orders_count, total_spent_fen = excluded.total_spent_fen,
                    first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at,
                    refunded_fen = excluded.refunded_fen, refunds_count = excluded.refunds_count,
                    {contact},
                    channels = CASE WHEN excluded.channels <@ p.channels THEN p.channels
                                    ELSE p.channels || excluded.channels END,
                    updated_at = now()
                """
        params = rfm.score_parameters(settings, as_of) | {"shop": shop_id}
        # A shop with no profiles yet (its first import, the usual day-one history) inserts them plainly:
        # 316,812 profiles 10.2 → 9.2 s without `ON CONFLICT`. A profile made meanwhile by a path that
        # does not take the shop's lock undoes the insert, and the upsert runs.
        first = not await self.session.scalar(_SHOP_HAS_PROFILES, params)
        if not first or await insert_plainly(self.session, insert, params) is None:
            await self.session.execute(text(upsert), params)
        # The rescore that follows joins the rows just written (a million, maybe into empty tables):
        # planned with the statistics from before, it took a nested loop over them (minutes, not
        # seconds). ANALYZE in this transaction counts them; a sample, ~0.5 s.
        await self.session.execute(text("ANALYZE segmentation.profiles"))

    async def fold(self, shop_id: str, source: str, target: str) -> None:
        """`customer.merged`: the source customer's orders become the target's; one profile remains."""
        await self.session.execute(
            update(_orders)
            .where(_orders.c.shop_id == shop_id, _orders.c.customer_id == source)
            .values(customer_id=target)
        )
        params = {"shop_id": shop_id, "source": source, "target": target}
        # The target's own first event may not have arrived yet (another topic, another partition).
        await self.session.execute(_ENSURE, {"shop_id": shop_id, "customer_id": target})
        await self.session.execute(_FOLD_PROFILE, params)
        for table in (CustomerTag.__table__, GroupMember.__table__, ProfileBehaviour.__table__):
            columns = [c.name for c in table.columns]
            values = [":target" if c == "customer_id" else c for c in columns]
            await self.session.execute(
                text(
                    f"""
                    WITH moved AS (
                        DELETE FROM segmentation.{table.name}
                        WHERE shop_id = :shop_id AND customer_id = :source RETURNING *
                    )
                    INSERT INTO segmentation.{table.name} ({", ".join(columns)})
                    SELECT {", ".join(values)}
                    FROM moved ON CONFLICT DO NOTHING
                    """  # noqa: S608 - table and column names come from our models
                ),
                params,
            )
        await self.session.execute(_BEHAVIOUR_COUNTS, {"shop_id": shop_id, "customer_id": target})
        await self.session.execute(
            delete(SegmentMember).where(SegmentMember.shop_id == shop_id, SegmentMember.customer_id == source)
        )
        await self.session.execute(
            delete(_profiles).where(_profiles.c.shop_id == shop_id, _profiles.c.customer_id == source)
        )
        await self.recompute(shop_id, [target])
