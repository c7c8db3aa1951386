"""An order's buyer is found by key, also in a shop the statistics do not know yet (a new shop's first
minutes, before autovacuum has analysed its rows). The planner takes such a shop for a row or two; the
lookup of an order's identities as one `(channel, external_id) IN (…)` list could then only use the
primary key's shop prefix, and every webhook read every identity of its shop (0.5 ms each, the top
statement of the webhook benchmark at 10,000 buyers)."""

from __future__ import annotations

from sqlalchemy import text

from laoke.testing.plans import (
    assert_reads_by_key,
    custom_and_generic_plans,
    explain,
    shop_unknown_to_statistics,
)
from laoke.testing.servers import ServerSet
from services.ingest.identity import KNOWN_IDENTITIES, MERGE_IDENTITIES, identity_keys

IDENTITIES = 3_000
_INSERT = text(
    "INSERT INTO ingest.customer_identities (shop_id, channel, external_id, customer_id) "
    "SELECT :shop, channel, channel || '_' || n, 'cus_' || n "
    "FROM generate_series(1, :identities) n, (VALUES ('taobao'), ('mobile')) c(channel)"
)


async def test_an_orders_identities_are_found_by_key_in_a_shop_unknown_to_the_statistics(
    stack: ServerSet,
) -> None:
    new_shop = shop_unknown_to_statistics(
        stack["ingest"].settings, [_INSERT], ["ingest.customer_identities"], {"identities": IDENTITIES}
    )
    async with new_shop as (session, shop):
        keys = [("taobao", "taobao_7"), ("mobile", "mobile_2024"), ("taobao", "taobao_new")]
        lookup = identity_keys(shop, keys)
        plan = await explain(session, KNOWN_IDENTITIES.text, lookup)
        assert_reads_by_key(plan, {"customer_identities"}, most=len(keys))

        found = {
            (r.channel, r.external_id): r.customer_id for r in await session.execute(KNOWN_IDENTITIES, lookup)
        }
        assert found == {("taobao", "taobao_7"): "cus_7", ("mobile", "mobile_2024"): "cus_2024"}

        # A merge moves one customer's identities to another (the first EXPLAIN ANALYZE really moves them,
        # so the generic plan finds none left: still by key, not through every identity of the shop).
        merge = {
            "shop_id": ("varchar", f"'{shop}'"),
            "source": ("varchar", "'cus_7'"),
            "target": ("varchar", "'cus_2024'"),
        }
        for plan in await custom_and_generic_plans(session, MERGE_IDENTITIES.text, merge):
            assert_reads_by_key(plan, {"customer_identities"}, most=2)
        moved = await session.scalar(
            text(
                "SELECT count(*) FROM ingest.customer_identities "
                "WHERE shop_id = :shop AND customer_id = 'cus_2024'"
            ),
            {"shop": shop},
        )
        assert moved == 4  # cus_2024's own two identities and cus_7's two
