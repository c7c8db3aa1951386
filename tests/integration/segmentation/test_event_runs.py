"""A run of order events goes into the projection as arrays, a few statements for the whole run: what
each buyer and order ends up as must not depend on how the run was cut."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from laoke.contracts.customers import BuyerSnapshot
from laoke.contracts.orders import OrderStatus
from laoke.kit.db import Database
from laoke.testing.factories import order_payload
from laoke.testing.servers import ServerSet
from services.segmentation.repository import ProfileRepository


async def test_a_run_with_a_buyer_on_two_channels_an_edited_name_and_stale_states(stack: ServerSet) -> None:
    shop = f"shp_runs_{uuid.uuid4().hex[:12]}"
    db = Database(stack["segmentation"].settings)
    try:
        async with db.transaction() as session:
            profiles = ProfileRepository(session)
            # The shop edited Li's name by hand before this run.
            await session.execute(
                text(
                    "INSERT INTO segmentation.profiles (shop_id, customer_id, name, edited_fields) "
                    "VALUES (:shop, 'cus_li', '李四 (VIP)', ARRAY['name']::varchar[])"
                ),
                {"shop": shop},
            )
            await profiles.touch(
                shop,
                [
                    ("cus_li", "taobao", BuyerSnapshot(external_id="tb_li", nick="li", receiver_name="李四")),
                    ("cus_wang", None, BuyerSnapshot(nick="wang")),
                    ("cus_li", "shopify", BuyerSnapshot(external_id="9901", email="li@example.com")),
                    ("cus_li", "taobao", BuyerSnapshot(mobile="13800000000")),
                ],
            )
            # Order 1 paid then completed in the run; order 2's older state arrives after its newer one.
            await profiles.record_orders(
                shop,
                [
                    order_payload("ord_1", "cus_li", OrderStatus.PAID, 1, 10_000, channel="taobao"),
                    order_payload("ord_1", "cus_li", OrderStatus.COMPLETED, 5, 10_000, channel="taobao"),
                    order_payload("ord_2", "cus_wang", OrderStatus.REFUNDED, 9, 5_000, channel="taobao"),
                ],
            )
            await profiles.record_orders(
                shop, [order_payload("ord_2", "cus_wang", OrderStatus.PAID, 2, 5_000, channel="taobao")]
            )
            await profiles.recompute(shop, ["cus_li", "cus_wang"])

            rows = await session.execute(
                text(
                    "SELECT customer_id, nick, name, mobile, email, channels, external_ids, orders_count, "
                    "total_spent_fen FROM segmentation.profiles WHERE shop_id = :shop ORDER BY customer_id"
                ),
                {"shop": shop},
            )
            li, wang = (tuple(r) for r in rows)
            assert li[:5] == ("cus_li", "li", "李四 (VIP)", "13800000000", "li@example.com")
            assert sorted(li[5]) == ["shopify", "taobao"]
            assert li[6] == {"taobao": "tb_li", "shopify": "9901"}
            assert li[7:] == (1, 10_000)
            assert wang == ("cus_wang", "wang", None, None, None, [], {}, 0, 0)
            states = await session.execute(
                text(
                    "SELECT order_id, status FROM segmentation.profile_orders WHERE shop_id = :shop "
                    "ORDER BY order_id"
                ),
                {"shop": shop},
            )
            assert [tuple(r) for r in states] == [("ord_1", "completed"), ("ord_2", "refunded")]
            await session.rollback()
    finally:
        await db.dispose()
