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
        lookup = str(
            ORDERS_BY_ID.params(shop_id=shop, order_ids=run).compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
            )
        )
        assert_reads_by_key(await explain(session, lookup), {"orders"}, most=2)
        # The service runs it as a prepared statement, which PostgreSQL may plan once for any shop and any
        # run: that plan must look orders up by key as well.
        prepared = lookup.replace(f"'{shop}'", "$1").replace("ARRAY['ord_2024', 'ord_7', 'ord_9999']", "$2")
        assert "$1" in prepared and "$2" in prepared, prepared
        await session.execute(text(f"PREPARE run_orders (varchar, varchar[]) AS {prepared}"))
        await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        generic = await explain(session, f"EXECUTE run_orders ('{shop}', ARRAY{run})")
        assert_reads_by_key(generic, {"orders"}, most=2)

        found = (await session.scalars(ORDERS_BY_ID, {"shop_id": shop, "order_ids": run})).all()
        assert sorted(o.order_id for o in found) == ["ord_2024", "ord_7"]


async def test_tier_progress_reads_only_the_runs_members_orders_whatever_the_plan(stack: ServerSet) -> None:
    """Tier progress is read for every run of order events of a shop with tiers. With the run's members as
    a condition on the orders, both plans walked a new shop's primary key: every order of the shop."""
    settings = stack["loyalty"].settings
    params = {"orders": ORDERS, "at": AT}
    async with shop_unknown_to_statistics(settings, [_INSERT], ["loyalty.orders"], params) as (session, shop):
        members = ["cus_7", "cus_8"]  # three orders each
        arguments = {"shop_id": shop, "customer_ids": members}
        values = (f"'{shop}'", f"ARRAY{members}")  # EXPLAIN takes no parameters: literals
        custom = PROGRESS.text.replace(":shop_id", values[0]).replace(":customer_ids", values[1])
        assert_reads_by_key(await explain(session, custom), {"orders"}, most=6)
        prepared = PROGRESS.text.replace(":shop_id", "$1").replace(":customer_ids", "$2")
        await session.execute(text(f"PREPARE run_progress (varchar, varchar[]) AS {prepared}"))
        await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        generic = await explain(session, f"EXECUTE run_progress ({values[0]}, {values[1]})")
        assert_reads_by_key(generic, {"orders"}, most=6)

        progress = await session.execute(PROGRESS, arguments)
        assert sorted(tuple(row) for row in progress) == [("cus_7", 15000, 3), ("cus_8", 15000, 3)]
