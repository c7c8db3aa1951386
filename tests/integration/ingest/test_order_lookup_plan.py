"""An order is found by its source key, also in a shop the statistics do not know yet (a new shop's first
minutes, before autovacuum has analysed its rows). The planner takes such a shop for a row or two, and
`shop_id = … AND channel = … AND external_order_id = …` was read through the (shop, placed) index with
the rest of the key as a filter: every update of an order, and every repeat of one, walked the whole
shop's orders."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, text
from sqlalchemy.dialects import postgresql

from laoke.testing.plans import assert_reads_by_key, custom_and_generic_plans, shop_unknown_to_statistics
from laoke.testing.servers import ServerSet
from services.ingest.models import Order, plumbing
from services.ingest.repository import _INSERT_OR_LOCK, _LOCK_BY_SOURCE

ORDERS = 3_000
_INSERT = text(
    "INSERT INTO ingest.orders (id, shop_id, channel, external_order_id, customer_id, status, currency, "
    "total_fen, paid_fen, refunded_fen, item_count, items, placed_at, source_modified_at) "
    "SELECT 'ord_' || substr(md5(:shop || n), 1, 16), :shop, 'api', 'EXT-' || n, 'cus_' || (n % 500), "
    "'paid', 'CNY', 100, 100, 0, 1, '[]', now() - make_interval(mins => n), now() "
    "FROM generate_series(1, :orders) n"
)
_DIALECT = postgresql.dialect(paramstyle="named")


def _named_sql(statement: Executable) -> str:
    return str(statement.compile(dialect=_DIALECT))


def _argument(name: str, value: Any) -> tuple[str, str]:
    """(SQL type, SQL literal) of a bound value, its type taken from the column it is written to."""
    table = Order.__table__ if name in Order.__table__.c else plumbing.outbox
    column = table.c[name if name in table.c else name.removeprefix("event_")]
    if value is None:
        literal = "NULL"
    else:
        raw = json.dumps(value) if isinstance(value, dict | list) else str(value)
        literal = "'" + raw.replace("'", "''") + "'"
    return column.type.compile(dialect=_DIALECT), literal


async def test_an_order_is_found_by_its_source_key_in_a_shop_unknown_to_the_statistics(
    stack: ServerSet,
) -> None:
    new_shop = shop_unknown_to_statistics(
        stack["ingest"].settings, [_INSERT], ["ingest.orders"], {"orders": ORDERS}
    )
    async with new_shop as (session, shop):
        key = {"shop_id": shop, "channel": "api", "external_order_id": "EXT-1234"}
        lock = {name: _argument(name, value) for name, value in key.items()}
        for plan in await custom_and_generic_plans(session, _named_sql(_LOCK_BY_SOURCE), lock):
            assert_reads_by_key(plan, {"orders"}, most=1)

        # The same order sent again: the insert finds it taken, and the order is read and locked by key.
        now = datetime.now(UTC).isoformat()
        order = key | {
            "id": f"ord_{uuid.uuid4().hex[:16]}", "customer_id": "cus_1", "import_id": None,
            "status": "shipped", "currency": "CNY", "total_fen": 100, "paid_fen": 100, "refunded_fen": 0,
            "refunds": {}, "item_count": 1, "items": [], "coupon_codes": [], "buyer_nick": None,
            "receiver": None, "placed_at": now, "paid_at": None, "shipped_at": None, "completed_at": None,
            "source_modified_at": now,
        }  # fmt: skip
        event = {
            "event_event_id": str(uuid.uuid4()), "event_topic": "laoke.orders.v1", "event_key": "k",
            "event_event_type": "order.created", "event_envelope": {},
        }  # fmt: skip
        arguments = {name: _argument(name, value) for name, value in (order | event).items()}
        for plan in await custom_and_generic_plans(session, _named_sql(_INSERT_OR_LOCK), arguments):
            assert_reads_by_key(plan, {"orders"}, most=1)
        written = await session.scalar(
            text("SELECT count(*) FROM ingest.outbox WHERE shop_id = :shop"), {"shop": shop}
        )
        assert written == 0  # the order existed: no event
