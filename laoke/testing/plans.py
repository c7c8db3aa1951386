"""Reading `EXPLAIN (ANALYZE, FORMAT JSON)` output in tests: how many rows each scan of a table read.

Plan tests pin down that a statement run once per run of events reads its rows by key, also while the
statistics do not know the shop (a new shop, before autovacuum has analysed its rows): the planner then
takes the shop for a row or two, and an index or a join over the whole shop looks as cheap as a lookup.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.db import Database
from laoke.kit.settings import ServiceSettings


@asynccontextmanager
async def shop_unknown_to_statistics(
    settings: ServiceSettings, inserts: Sequence[TextClause], tables: Sequence[str], params: dict[str, Any]
) -> AsyncIterator[tuple[AsyncSession, str]]:
    """A session and a new shop the statistics have not seen, as a shop in its first minutes is: each
    insert runs for an established shop, `tables` are analysed, then each insert runs for the new shop
    (`:shop` is bound; `params` gives the rest). Everything is rolled back afterwards."""
    shop = f"shp_plan_{uuid.uuid4().hex[:12]}"
    db = Database(settings)
    try:
        async with db.transaction() as session:
            for statement in inserts:
                await session.execute(statement, {**params, "shop": f"{shop}_established"})
            for table in tables:
                await session.execute(text(f"ANALYZE {table}"))
            for statement in inserts:
                await session.execute(statement, {**params, "shop": shop})
            yield session, shop
            await session.rollback()
    finally:
        await db.dispose()


def scans(plan: dict[str, Any], tables: set[str]) -> list[dict[str, Any]]:
    """Every scan of `tables` in a plan node and below."""
    found = [plan] if plan.get("Relation Name") in tables else []
    for child in plan.get("Plans", []):
        found += scans(child, tables)
    return found


def rows_read(scan: dict[str, Any]) -> int:
    """Rows a scan produced over all its loops plus those it read and filtered out."""
    loops = scan["Actual Loops"]
    return round(
        scan["Actual Rows"] * loops
        + scan.get("Rows Removed by Filter", 0) * loops
        + scan.get("Rows Removed by Index Recheck", 0) * loops
    )


async def explain(
    session: AsyncSession, statement: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The executed plan's root node (the statement really runs: roll back if it writes)."""
    result = await session.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + statement), params or {})
    return dict(result.scalar_one()[0]["Plan"])


async def custom_and_generic_plans(
    session: AsyncSession, statement: str, arguments: dict[str, tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The executed plans of `statement` (with `:name` placeholders): the one PostgreSQL makes for these
    values, and the generic one it may make once for any values of a prepared statement (asyncpg
    prepares every statement). `arguments` gives each name's SQL type and a literal of its value, since
    EXPLAIN takes no parameters."""
    names = list(arguments)

    def bound(value: Callable[[int, str], str]) -> str:
        # Longest names first, whole names only: `:shop` must not eat the start of `:shop_id`.
        sql = statement
        for name in sorted(names, key=len, reverse=True):
            sql = re.sub(rf":{name}\b", lambda _, n=name: value(names.index(n) + 1, n), sql)
        return sql

    custom = await explain(session, bound(lambda _, name: arguments[name][1]))
    prepared = f"plan_probe_{uuid.uuid4().hex[:8]}"
    types = ", ".join(arguments[name][0] for name in names)
    await session.execute(text(f"PREPARE {prepared} ({types}) AS {bound(lambda n, _: f'${n}')}"))
    await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    try:
        values = ", ".join(arguments[name][1] for name in names)
        generic = await explain(session, f"EXECUTE {prepared} ({values})")
    finally:
        await session.execute(text("RESET plan_cache_mode"))
        await session.execute(text(f"DEALLOCATE {prepared}"))
    return custom, generic


def assert_reads_by_key(plan: dict[str, Any], tables: set[str], most: int) -> None:
    found = scans(plan, tables)
    assert found, f"the plan reads none of {sorted(tables)}"
    for scan in found:
        read = rows_read(scan)
        index = f" using {scan['Index Name']}" if "Index Name" in scan else ""
        assert read <= most, (
            f"{scan['Node Type']} on {scan['Relation Name']}{index} read {read} rows (at most {most})"
        )
