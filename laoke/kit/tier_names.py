"""Tier names as consumers see them. `loyalty.tiers_renamed` is keyed by shop and `loyalty.tier_changed`
by member, so the two travel on different partitions: a member's move published just before a rename,
carrying the tier's old name, may be consumed after the rename. Each consumer that keeps a member's tier
name records the renames it has seen, by level and time, in its own `tier_names` table, and a move older
than the rename of its level takes the renamed name.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, SmallInteger, String, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.loyalty import RenamedTier


def tier_names_table(metadata: MetaData) -> Table:
    return Table(
        "tier_names",
        metadata,
        Column("shop_id", String(64), primary_key=True),
        Column("level", SmallInteger, primary_key=True),
        Column("name", String(64), nullable=False),
        Column("renamed_at", DateTime(timezone=True), nullable=False),
    )


class TierNames:
    def __init__(self, table: Table) -> None:
        self.table = table
        self._renamed_since = select(table.c.name).where(
            table.c.shop_id == bindparam("shop_id"),
            table.c.level == bindparam("level"),
            table.c.renamed_at > bindparam("at"),
        )

    async def record(
        self, session: AsyncSession, shop_id: str, tiers: Iterable[RenamedTier], at: datetime
    ) -> None:
        """The renames of one `tiers_renamed` event; a rename older than the one stored changes nothing
        (two renames may be consumed out of order after a replay)."""
        rows = [{"shop_id": shop_id, "level": t.level, "name": t.name, "renamed_at": at} for t in tiers]
        if not rows:
            return
        statement = insert(self.table).values(rows)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["shop_id", "level"],
                set_={"name": statement.excluded.name, "renamed_at": statement.excluded.renamed_at},
                where=self.table.c.renamed_at < statement.excluded.renamed_at,
            )
        )

    async def current(self, session: AsyncSession, shop_id: str, level: int, name: str, at: datetime) -> str:
        """The name a member who moved to `level` at `at` has now: `name`, unless the level was renamed
        after the move."""
        renamed = await session.scalar(self._renamed_since, {"shop_id": shop_id, "level": level, "at": at})
        return renamed or name
