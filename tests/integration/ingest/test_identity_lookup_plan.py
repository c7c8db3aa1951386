"""An order's buyer is found by key, also in a shop the statistics do not know yet (a new shop's first
minutes, before autovacuum has analysed its rows). The planner takes such a shop for a row or two; the
lookup of an order's identities as one `(channel, external_id) IN (…)` list could then only use the
primary key's shop prefix, and every webhook read every identity of its shop (0.5 ms each, the top
statement of the webhook benchmark at 10,000 buyers)."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from laoke.kit.db import Database
from laoke.testing.plans import assert_reads_by_key, explain
from laoke.testing.servers import ServerSet
from services.ingest.identity import KNOWN_IDENTITIES, identity_keys

IDENTITIES = 3_000
_INSERT = text(
    "INSERT INTO ingest.customer_identities (shop_id, channel, external_id, customer_id) "
    "SELECT :shop, channel, channel || '_' || n, 'cus_' || n "
    "FROM generate_series(1, :identities) n, (VALUES ('taobao'), ('mobile')) c(channel)"
)


async def test_an_orders_identities_are_found_by_key_in_a_shop_unknown_to_the_statistics(
    stack: ServerSet,
) -> None:
    shop = f"shp_plan_{uuid.uuid4().hex[:12]}"
    db = Database(stack["ingest"].settings)
    try:
        async with db.transaction() as session:
            # An established shop the statistics know; the new shop's identities come after the analysis.
            await session.execute(_INSERT, {"shop": f"{shop}_established", "identities": IDENTITIES})
            await session.execute(text("ANALYZE ingest.customer_identities"))
            await session.execute(_INSERT, {"shop": shop, "identities": IDENTITIES})

            keys = [("taobao", "taobao_7"), ("mobile", "mobile_2024"), ("taobao", "taobao_new")]
            params = identity_keys(shop, keys)
            plan = await explain(session, KNOWN_IDENTITIES.text, params)
            assert_reads_by_key(plan, {"customer_identities"}, most=len(keys))

            found = {
                (r.channel, r.external_id): r.customer_id
                for r in await session.execute(KNOWN_IDENTITIES, params)
            }
            assert found == {("taobao", "taobao_7"): "cus_7", ("mobile", "mobile_2024"): "cus_2024"}
            await session.rollback()
    finally:
        await db.dispose()
