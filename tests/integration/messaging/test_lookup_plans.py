"""What an automation's send looks up by key (the contacts of its messages, the orders a 催付 waits on)
is read by key, also for a shop the statistics do not know yet (a new shop's first minute, before
autovacuum has analysed its rows). The planner takes such a shop for a row; with an index led by the
shop holding every row (the contacts' mobile, the orders' paid time), walking the whole shop on it
looked as cheap as the lookups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from laoke.testing.plans import (
    assert_reads_by_key,
    custom_and_generic_plans,
    explain,
    shop_unknown_to_statistics,
)
from laoke.testing.servers import ServerSet
from services.messaging.automations import PAID_OR_CLOSED
from services.messaging.dispatcher import contact_variables
from services.messaging.handlers import BUYERS_WITH_ORDERS
from services.messaging.queue import MARKETING_SENT

ROWS = 3_000
AT = datetime(2026, 11, 1, 12, tzinfo=UTC)
_CONTACTS = text(
    "INSERT INTO messaging.contacts (shop_id, customer_id, name, mobile, email) "
    "SELECT :shop, 'cus_' || n, '顾客' || n, '138' || lpad(n::text, 8, '0'), 'b' || n || '@example.com' "
    "FROM generate_series(1, :rows) n"
)
_ORDERS = text(
    "INSERT INTO messaging.orders (shop_id, order_id, customer_id, external_order_id, status, total_fen, "
    "paid_fen, refunded_fen, placed_at, paid_at, source_modified_at) "
    "SELECT :shop, 'ord_' || n, 'cus_' || (n % 1000), 'T' || n, 'paid', 5000, 5000, 0, :at, :at, :at "
    "FROM generate_series(1, :rows) n"
)
_MESSAGES = text(
    "INSERT INTO messaging.messages (shop_id, source, customer_id, channel, marketing, campaign_id, "
    "template_id, status, recipient, variables, not_before, sent_at, attempts) "
    "SELECT :shop, 'campaign:cmp_plan', 'cus_' || n, 'inapp', true, 'cmp_plan', 'tpl_plan', 'sent', "
    "'cus_' || n, '{}', :at, :at, 1 FROM generate_series(1, :rows) n"
)


async def test_a_sends_contacts_and_orders_are_read_by_key_in_a_shop_unknown_to_the_statistics(
    stack: ServerSet,
) -> None:
    new_shop = shop_unknown_to_statistics(
        stack["messaging"].settings,
        [_CONTACTS, _ORDERS, _MESSAGES],
        ["messaging.contacts", "messaging.orders", "messaging.messages"],
        {"rows": ROWS, "at": AT},
    )
    async with new_shop as (session, shop):
        lookup = contact_variables(shop, {"cus_7", "cus_2024"}).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        assert_reads_by_key(await explain(session, str(lookup)), {"contacts"}, most=2)
        found = (await session.execute(contact_variables(shop, {"cus_7", "cus_2024"}))).all()
        assert sorted(r.name for r in found) == ["顾客2024", "顾客7"]

        ids = {"shop": shop, "ids": ["ord_7", "ord_2024", "ord_unknown"]}
        assert_reads_by_key(await explain(session, PAID_OR_CLOSED.text, ids), {"orders"}, most=2)
        paid = dict((await session.execute(PAID_OR_CLOSED, ids)).all())
        assert paid == {"ord_7": "paid", "ord_2024": "paid"}

        # The frequency cap's count of what each buyer of a send was sent lately.
        capped = {"shop": shop, "ids": ["cus_7", "cus_2024"], "since": AT - timedelta(days=7)}
        assert_reads_by_key(await explain(session, MARKETING_SENT.text, capped), {"messages"}, most=2)
        sent = dict((await session.execute(MARKETING_SENT, capped)).all())
        assert sent == {"cus_7": 1, "cus_2024": 1}

        # A run of order events asks which of its buyers ordered before (no welcome for them).
        buyers = {"shop": ("varchar", f"'{shop}'"), "ids": ("varchar[]", "ARRAY['cus_7', 'cus_8']")}
        for plan in await custom_and_generic_plans(session, BUYERS_WITH_ORDERS.text, buyers):
            assert_reads_by_key(plan, {"orders"}, most=6)
        returning = await session.scalars(
            BUYERS_WITH_ORDERS, {"shop": shop, "ids": ["cus_7", "cus_8", "cus_new"]}
        )
        assert sorted(returning) == ["cus_7", "cus_8"]
