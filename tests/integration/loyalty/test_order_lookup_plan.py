"""A run of order events finds its orders by key, also for a shop the statistics do not know yet (a new
shop's first minute, before autovacuum has analysed its rows). The planner takes such a shop for a row
or two; with the index of a member's orders led by the shop, walking the whole shop looked as cheap as
the lookups, and every run of events read every order of the shop."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from laoke.testing.plans import assert_reads_by_key, custom_and_generic_plans, shop_unknown_to_statistics
from laoke.testing.servers import ServerSet
from services.loyalty.orders import ORDERS_BY_ID, PROGRESS

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
        run = ["ord_2024", "ord_7", "ord_9999"]  # the last one is new: not stored yet
        # Both plans: the service runs it as a prepared statement, which PostgreSQL may plan once for any
        # shop and any run.
        lookup = str(ORDERS_BY_ID.compile(dialect=postgresql.dialect(paramstyle="named")))
        arguments = {"shop_id": ("varchar", f"'{shop}'"), "order_ids": ("varchar[]", f"ARRAY{run}")}
        for plan in await custom_and_generic_plans(session, lookup, arguments):
            assert_reads_by_key(plan, {"orders"}, most=2)

        found = (await session.scalars(ORDERS_BY_ID, {"shop_id": shop, "order_ids": run})).all()
        assert sorted(o.order_id for o in found) == ["ord_2024", "ord_7"]


async def test_tier_progress_reads_only_the_runs_members_orders_whatever_the_plan(stack: ServerSet) -> None:
    """Tier progress is read for every run of order events of a shop with tiers. With the run's members as
    a condition on the orders, both plans walked a new shop's primary key: every order of the shop."""
    settings = stack["loyalty"].settings
    params = {"orders": ORDERS, "at": AT}
    async with shop_unknown_to_statistics(settings, [_INSERT], ["loyalty.orders"], params) as (session, shop):
        members = ["cus_7", "cus_8"]  # three orders each
        arguments = {"shop_id": ("varchar", f"'{shop}'"), "customer_ids": ("varchar[]", f"ARRAY{members}")}
        for plan in await custom_and_generic_plans(session, PROGRESS.text, arguments):
            assert_reads_by_key(plan, {"orders"}, most=6)

        progress = await session.execute(PROGRESS, {"shop_id": shop, "customer_ids": members})
        assert sorted(tuple(row) for row in progress) == [("cus_7", 15000, 3), ("cus_8", 15000, 3)]
