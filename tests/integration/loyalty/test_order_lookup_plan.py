"""A run of order events finds its orders by key, also for a shop the statistics do not know yet (a new
shop's first minute, before autovacuum has analysed its rows). The planner takes such a shop for a row
or two; with the index of a member's orders led by the shop, walking the whole shop looked as cheap as
the lookups, and every run of events read every order of the shop."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from laoke.testing.plans import assert_reads_by_key, explain, shop_unknown_to_statistics
from laoke.testing.servers import ServerSet
from services.loyalty.orders import orders_by_id

ORDERS = 3_000
AT = datetime(2026, 11, 1, 12, tzinfo=UTC)
_INSERT = text(
    "INSERT INTO loyalty.orders (shop_id, order_id, customer_id, status, paid_fen, refunded_fen, completed, "
    "placed_at, source_modified_at) "
    "SELECT :shop, 'ord_' || n, 'cus_' || (n % 1000), 'completed', 5000, 0, true, :at, :at "
    "FROM generate_series(1, :orders) n"
)


async def test_a_runs_orders_are_found_by_key_in_a_shop_unknown_to_the_statistics(stack: ServerSet) -> None:
    params = {"orders": ORDERS, "at": AT}
    settings = stack["loyalty"].settings
    async with shop_unknown_to_statistics(settings, [_INSERT], ["loyalty.orders"], params) as (session, shop):
        run = {"ord_7", "ord_2024", "ord_9999"}  # the last one is new: not stored yet
        lookup = orders_by_id(shop, run).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        plan = await explain(session, str(lookup))
        assert_reads_by_key(plan, {"orders"}, most=2)

        found = (await session.scalars(orders_by_id(shop, run))).all()
        assert sorted(o.order_id for o in found) == ["ord_2024", "ord_7"]
