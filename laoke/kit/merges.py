"""Customer merges as consumers see them: `customer.merged {from, into}` arrives on its own topic, so an
order event of `from` may still arrive after the merge was folded. Each consumer service keeps the
merges it has seen in its own `merged_customers` table and maps late events onto the surviving id.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession


def merged_customers_table(metadata: MetaData) -> Table:
    return Table(
        "merged_customers",
        metadata,
        Column("shop_id", String(64), primary_key=True),
        Column("customer_id", String(32), primary_key=True),
        Column("into_customer_id", String(32), nullable=False),
        Column("merged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Merges:
    def __init__(self, table: Table) -> None:
        self.table = table
        self._find = select(table.c.into_customer_id).where(
            table.c.shop_id == bindparam("shop_id"), table.c.customer_id == bindparam("customer_id")
        )
        # Every consumer run asks this: built once, and `= ANY(:ids)` keeps one SQL text (one prepared
        # statement) whatever the run's size, where `IN` made one per size.
        self._find_many = select(table.c.customer_id, table.c.into_customer_id).where(
            table.c.shop_id == bindparam("shop_id"),
            table.c.customer_id == any_(bindparam("customer_ids", type_=ARRAY(String))),
        )

    async def record(self, session: AsyncSession, shop_id: str, source: str, target: str) -> None:
        t = self.table
        # Earlier merges into `source` now point at `target` too, so a lookup never needs to chain.
        await session.execute(
            t.update()
            .where(t.c.shop_id == shop_id, t.c.into_customer_id == source)
            .values(into_customer_id=target)
        )
        await session.execute(
            insert(t)
            .values(shop_id=shop_id, customer_id=source, into_customer_id=target)
            .on_conflict_do_update(
                index_elements=["shop_id", "customer_id"], set_={"into_customer_id": target}
            )
        )

    async def surviving(self, session: AsyncSession, shop_id: str, customer_id: str) -> str:
        found = await session.scalar(self._find, {"shop_id": shop_id, "customer_id": customer_id})
        return found or customer_id

    async def surviving_many(
        self, session: AsyncSession, shop_id: str, customer_ids: set[str]
    ) -> dict[str, str]:
        """`{merged away: surviving}` for those of `customer_ids` that were merged into another."""
        params = {"shop_id": shop_id, "customer_ids": sorted(customer_ids)}
        rows = await session.execute(self._find_many, params)
        return {row.customer_id: row.into_customer_id for row in rows}
