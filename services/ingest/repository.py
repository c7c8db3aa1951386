"""Every query of the ingest service. All of them are scoped by shop.

Hot statements are built once at import and take their values as bound parameters: building and
coercing a statement per order cost more CPU than executing it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    String,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import array, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.models import CustomerIdentity, Order, plumbing

_identities = CustomerIdentity.__table__
_orders = Order.__table__

_FIND_IDENTITY = select(_identities.c.customer_id).where(
    _identities.c.shop_id == bindparam("shop_id"),
    _identities.c.channel == bindparam("channel"),
    _identities.c.external_id == bindparam("external_id"),
)
# An order as the API sends it: a new one is written with the event announcing it, in one round trip;
# an existing one is locked and read instead, in the same round trip, for the caller to update. The
# order's columns are bound by their names, the event's as `Outbox.row` names them with `event_` in front
# (`shop_id` is shared).
ORDER_COLUMNS = (
    "id", "shop_id", "channel", "external_order_id", "customer_id", "import_id", "status", "currency",
    "total_fen", "paid_fen", "refunded_fen", "refunds", "item_count", "items", "coupon_codes", "buyer_nick",
    "receiver", "placed_at", "paid_at", "shipped_at", "completed_at", "source_modified_at",
)  # fmt: skip
# What an update of an existing order sets (its identity, buyer and import stay).
UPDATED_COLUMNS = ORDER_COLUMNS[ORDER_COLUMNS.index("status") :]
_outbox = plumbing.outbox
_EVENT_COLUMNS = ("event_id", "topic", "key", "event_type", "envelope")


def _announcing(written: CTE, shop: str) -> CTE:
    """The event (bound as `event_…`, its shop as `shop`) written for each row `written` returns."""
    return (
        insert(_outbox)
        .from_select(
            [*_EVENT_COLUMNS, "shop_id"],
            select(
                *(bindparam(f"event_{name}", type_=_outbox.c[name].type) for name in _EVENT_COLUMNS),
                bindparam(shop, type_=_outbox.c.shop_id.type),
            ).select_from(written),
        )
        .cte(f"announced_{written.name}")
    )


_inserted = (
    insert(_orders)
    .values({name: bindparam(name, type_=_orders.c[name].type) for name in ORDER_COLUMNS})
    .on_conflict_do_nothing()
    .returning(_orders.c.id)
    .cte("inserted")
)
# An order's source key as a row beside the orders, not as conditions on them: in a shop the statistics do
# not know yet (a new shop's first minutes), `shop_id = :shop_id` looks like a row or two, and the lookup
# walked every order of the shop through the (shop, placed) index, filtering on the rest of the key.
# `unnest` keeps the planner from folding the values back into conditions.
_source_key = select(
    cast(bindparam("shop_id"), String).label("shop_id"),
    cast(bindparam("channel"), String).label("channel"),
    func.unnest(array([cast(bindparam("external_order_id"), String)])).label("external_order_id"),
).subquery("source_key")
_BY_SOURCE_KEY = and_(
    _orders.c.shop_id == _source_key.c.shop_id,
    _orders.c.channel == _source_key.c.channel,
    _orders.c.external_order_id == _source_key.c.external_order_id,
)
# Locked inside a lateral subquery so that the statement always returns one row: `inserted_id` set for a
# new order, the order's columns for an existing one, neither when another request inserted the order
# after this statement's snapshot was taken (it waited for that insert, which it cannot see).
_existing = (
    select(_orders)
    .select_from(_source_key.join(_orders, _BY_SOURCE_KEY))
    .where(~exists(select(_inserted.c.id)))
    .with_for_update(of=_orders)
    .lateral("existing")
)
_ORDER_FIELDS = tuple(column.key for column in _orders.c)
_one = select(literal_column("1").label("one")).subquery("one")
_INSERT_OR_LOCK = (
    select(select(_inserted.c.id).scalar_subquery().label("inserted_id"), *_existing.c)
    .select_from(_one.outerjoin(_existing, true()))
    .add_cte(_announcing(_inserted, "shop_id"))
)
# An existing order's new state, written with the event announcing it or without one. UPDATE reserves its
# columns' names for SET, so the row is found by `order_shop` and `order_pk`.
_update = (
    update(_orders)
    .where(_orders.c.shop_id == bindparam("order_shop"), _orders.c.id == bindparam("order_pk"))
    .values({name: bindparam(name, type_=_orders.c[name].type) for name in UPDATED_COLUMNS})
)
_UPDATE = _update
_updated = _update.returning(_orders.c.id).cte("updated")
_UPDATE_ANNOUNCED = select(_updated.c.id).add_cte(_announcing(_updated, "order_shop"))
_LOCK_BY_SOURCE = (
    select(Order).select_from(_source_key.join(_orders, _BY_SOURCE_KEY)).with_for_update(of=Order)
)
_GET_ORDER = select(Order).where(Order.shop_id == bindparam("shop_id"), Order.id == bindparam("order_id"))


class CustomerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, shop_id: str, channel: str, external_id: str) -> str | None:
        return await self.session.scalar(
            _FIND_IDENTITY, {"shop_id": shop_id, "channel": channel, "external_id": external_id}
        )


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, order_id: str) -> Order | None:
        return await self.session.scalar(_GET_ORDER, {"shop_id": shop_id, "order_id": order_id})

    async def page(
        self,
        shop_id: str,
        *,
        limit: int,
        customer_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[Order]:
        """Newest first by placement time; keyset pagination so deep pages cost what the first does."""
        query = select(Order).where(Order.shop_id == shop_id)
        if customer_id is not None:
            query = query.where(Order.customer_id == customer_id)
        if status is not None:
            query = query.where(Order.status == status)
        if since is not None:
            query = query.where(Order.placed_at >= since)
        if after is not None:
            query = query.where(tuple_(Order.placed_at, Order.id) < tuple_(*after))
        query = query.order_by(Order.placed_at.desc(), Order.id.desc()).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def lock_by_source(self, shop_id: str, channel: str, external_order_id: str) -> Order | None:
        return await self.session.scalar(
            _LOCK_BY_SOURCE, {"shop_id": shop_id, "channel": channel, "external_order_id": external_order_id}
        )

    async def insert_or_lock(self, values: dict[str, Any], event: dict[str, Any]) -> Order | None:
        """Insert a new order (`ORDER_COLUMNS`) with the outbox row announcing it (`Outbox.row`'s values,
        of the order's shop) and return None; when one with the same source id exists, write neither and
        return it, locked for this transaction (not attached to the session: `update` writes it)."""
        params = values | {f"event_{name}": event[name] for name in _EVENT_COLUMNS}
        for _ in range(2):  # again, at most once, when a concurrent request inserted it first
            row = (await self.session.execute(_INSERT_OR_LOCK, params)).one()
            if row.inserted_id is not None:
                return None
            if row.id is not None:
                return Order(**{name: row._mapping[name] for name in _ORDER_FIELDS})
        raise AssertionError(f"order {values['external_order_id']} neither inserted nor found")

    async def update(self, order: Order, event: dict[str, Any] | None) -> None:
        """Write the order's new state (`UPDATED_COLUMNS`), with the outbox row announcing it if any."""
        params: dict[str, Any] = {name: getattr(order, name) for name in UPDATED_COLUMNS}
        params |= {"order_shop": order.shop_id, "order_pk": order.id}
        if event is None:
            await self.session.execute(_UPDATE, params)
            return
        params |= {f"event_{name}": event[name] for name in _EVENT_COLUMNS}
        await self.session.execute(_UPDATE_ANNOUNCED, params)
