"""Every query of the segmentation service. All of them are scoped by shop.

Hot statements are built once and take bound parameters (see services/ingest/repository.py).
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import PAID_STATUSES, OrderEventPayload
from services.segmentation.models import Profile, ProfileOrder

_orders = ProfileOrder.__table__
_profiles = Profile.__table__

_order_insert = insert(_orders)
# An event older than what is stored changes nothing (events of one order can arrive out of order
# after a replay).
_RECORD_ORDER = _order_insert.on_conflict_do_update(
    index_elements=[_orders.c.shop_id, _orders.c.order_id],
    set_={
        c: _order_insert.excluded[c]
        for c in ("status", "paid_fen", "refunded_fen", "placed_at", "source_modified_at")
    },
    where=_orders.c.source_modified_at <= _order_insert.excluded.source_modified_at,
)

_AGGREGATE_COLUMNS = ("orders_count", "total_spent_fen", "first_order_at", "last_order_at")
_aggregate = select(
    bindparam("shop_id", type_=_profiles.c.shop_id.type).label("shop_id"),
    bindparam("customer_id", type_=_profiles.c.customer_id.type).label("customer_id"),
    func.count().label("orders_count"),
    func.coalesce(func.sum(_orders.c.paid_fen - _orders.c.refunded_fen), 0).label("total_spent_fen"),
    func.min(_orders.c.placed_at).label("first_order_at"),
    func.max(_orders.c.placed_at).label("last_order_at"),
).where(
    _orders.c.shop_id == bindparam("shop_id"),
    _orders.c.customer_id == bindparam("customer_id"),
    _orders.c.status.in_([s.value for s in PAID_STATUSES]),
)
_profile_insert = insert(_profiles).from_select(["shop_id", "customer_id", *_AGGREGATE_COLUMNS], _aggregate)
_RECOMPUTE = _profile_insert.on_conflict_do_update(
    index_elements=[_profiles.c.shop_id, _profiles.c.customer_id],
    set_={c: _profile_insert.excluded[c] for c in _AGGREGATE_COLUMNS} | {"updated_at": func.now()},
)
_LOCK_SHOP = text("SELECT pg_advisory_xact_lock(hashtextextended(:shop_id, 1))")
# Shared shop lock and exclusive customer lock in one round trip (this runs on every order event).
_LOCK_CUSTOMER = text(
    "SELECT pg_advisory_xact_lock_shared(hashtextextended(:shop_id, 1)), "
    "pg_advisory_xact_lock(hashtextextended(:shop_id || ':' || :customer_id, 2))"
)
_GET_PROFILE = select(Profile).where(
    Profile.shop_id == bindparam("shop_id"), Profile.customer_id == bindparam("customer_id")
)


class ProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, customer_id: str) -> Profile | None:
        return await self.session.scalar(_GET_PROFILE, {"shop_id": shop_id, "customer_id": customer_id})

    async def record_order(self, shop_id: str, order: OrderEventPayload) -> None:
        await self.session.execute(
            _RECORD_ORDER,
            {
                "shop_id": shop_id,
                "order_id": order.order_id,
                "customer_id": order.customer_id,
                "status": order.status.value,
                "paid_fen": order.paid_fen,
                "refunded_fen": order.refunded_fen,
                "placed_at": order.placed_at,
                "source_modified_at": order.source_modified_at,
            },
        )

    async def recompute(self, shop_id: str, customer_id: str) -> None:
        """Set-based recomputation of one profile's aggregates from its orders: always exact, whatever
        order the events arrived in.

        Two transactions recomputing one customer (an order event and a merge fold, say) would each
        aggregate without the other's uncommitted order and the later commit would win with a stale
        total; the lock makes the second wait and aggregate after the first commits (found by the merge
        test). The shop lock is shared here and taken exclusively by a history import's bulk recompute.
        """
        params = {"shop_id": shop_id, "customer_id": customer_id}
        await self.session.execute(_LOCK_CUSTOMER, params)
        await self.session.execute(_RECOMPUTE, params)

    async def absorb_import(self, shop_id: str, table: str) -> None:
        """Fold a history import's orders (in temp table `table`) into the projection, then recompute
        every affected profile in one statement. Newer stored states win, as with events."""
        await self.session.execute(_LOCK_SHOP, {"shop_id": shop_id})
        paid = ", ".join(f"'{s.value}'" for s in PAID_STATUSES)
        await self.session.execute(
            text(
                f"""
                INSERT INTO segmentation.profile_orders AS p
                    (shop_id, order_id, customer_id, status, paid_fen, refunded_fen, placed_at,
                     source_modified_at)
                SELECT :shop, id, customer_id, status, paid_fen, refunded_fen, placed_at, source_modified_at
                FROM {table}
                ON CONFLICT (shop_id, order_id) DO UPDATE SET
                    customer_id = excluded.customer_id, status = excluded.status,
                    paid_fen = excluded.paid_fen,
                    refunded_fen = excluded.refunded_fen, placed_at = excluded.placed_at,
                    source_modified_at = excluded.source_modified_at
                WHERE p.source_modified_at <= excluded.source_modified_at
                """  # noqa: S608 - the table name is ours, values are bound
            ),
            {"shop": shop_id},
        )
        await self.session.execute(
            text(
                f"""
                INSERT INTO segmentation.profiles AS p
                    (shop_id, customer_id, orders_count, total_spent_fen, first_order_at, last_order_at)
                SELECT :shop, c.customer_id, count(o.order_id),
                       coalesce(sum(o.paid_fen - o.refunded_fen), 0), min(o.placed_at), max(o.placed_at)
                FROM (SELECT DISTINCT customer_id FROM {table}) c
                LEFT JOIN segmentation.profile_orders o
                  ON o.shop_id = :shop AND o.customer_id = c.customer_id AND o.status IN ({paid})
                GROUP BY c.customer_id
                ON CONFLICT (shop_id, customer_id) DO UPDATE SET
                    orders_count = excluded.orders_count, total_spent_fen = excluded.total_spent_fen,
                    first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at,
                    updated_at = now()
                """  # noqa: S608 - the table name and statuses are ours, values are bound
            ),
            {"shop": shop_id},
        )

    async def fold(self, shop_id: str, source: str, target: str) -> None:
        """`customer.merged`: the source customer's orders become the target's; one profile remains."""
        await self.session.execute(
            update(_orders)
            .where(_orders.c.shop_id == shop_id, _orders.c.customer_id == source)
            .values(customer_id=target)
        )
        await self.session.execute(
            delete(_profiles).where(_profiles.c.shop_id == shop_id, _profiles.c.customer_id == source)
        )
        await self.recompute(shop_id, target)
