"""`Merges`: a consumer maps the ids of merged-away customers onto the surviving one, one id or a whole
run at a time, and a chain of merges never needs following."""

from __future__ import annotations

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.schema import CreateTable

from laoke.kit.merges import Merges, merged_customers_table

MERGES = Merges(merged_customers_table(MetaData()))


async def test_merged_ids_map_to_the_survivor_one_or_many_at_a_time(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine) as session:
            # A temp table of the same name and shape, this session's own (temp tables come first in the
            # search path, and the table here has no schema).
            ddl = str(CreateTable(MERGES.table).compile(engine.sync_engine))
            await session.execute(text(ddl.replace("CREATE TABLE", "CREATE TEMP TABLE", 1)))
            await MERGES.record(session, "shp_a", "cus_1", "cus_2")
            await MERGES.record(session, "shp_a", "cus_2", "cus_3")  # cus_1 now points at cus_3 too
            await MERGES.record(session, "shp_b", "cus_9", "cus_8")

            assert await MERGES.surviving(session, "shp_a", "cus_1") == "cus_3"
            assert await MERGES.surviving(session, "shp_a", "cus_7") == "cus_7"
            # Runs of any size share one statement; ids of another shop or never merged are left out.
            assert await MERGES.surviving_many(session, "shp_a", {"cus_1", "cus_2", "cus_7", "cus_9"}) == {
                "cus_1": "cus_3",
                "cus_2": "cus_3",
            }
            assert await MERGES.surviving_many(session, "shp_b", {"cus_9"}) == {"cus_9": "cus_8"}
            assert await MERGES.surviving_many(session, "shp_a", set()) == {}
            await session.rollback()
    finally:
        await engine.dispose()
