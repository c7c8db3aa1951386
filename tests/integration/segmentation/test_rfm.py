"""RFM scores, classes and lifecycle labels against hand-computed expectations, with a moved clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.kit import clock
from laoke.kit.db import Database
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import INLINE_RESCORE_LIMIT, ServerSet
from services.segmentation import rfm, rfm_config
from services.segmentation.models import RfmConfig
from services.segmentation.schedule import refresh_all
from tests.integration.segmentation.shopping import NOW, buy, profile


def scores(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p["r_score"], p["f_score"], p["m_score"], p["rfm_segment"], p["lifecycle"])


async def test_scores_classes_and_labels_match_hand_computation(shop: ShopClient, frozen: None) -> None:
    # Default preset: R by days [30, 60, 90, 180], F by orders [2, 3, 5, 8], M by yuan [100, 300, 1000, 3000].
    a = await buy(shop, "A-1", "buyer-a", 10, "500.00")  # R5 F1 M3: recent big spender, one order
    b = ""
    for i in range(8):
        b = await buy(shop, f"B-{i}", "buyer-b", 100 + i, "500.00")  # R2 F5 M5, last bought 100 days ago
    c = await buy(shop, "C-1", "buyer-c", 200, "50.00")  # R1 F1 M1, 200 days ago

    assert scores(await profile(shop, a, 1)) == (5, 1, 3, "important_develop", "new")
    assert scores(await profile(shop, b, 8)) == (2, 5, 5, "important_keep", "sleeping")
    churned = await profile(shop, c, 1)
    assert scores(churned) == (1, 1, 1, "general_retain", "churned")
    assert churned["rfm_segment_name"] == "一般挽留"

    summary = (await shop.client.get("/api/v1/rfm/summary", headers=shop.headers())).json()
    assert summary["customers"] == 3
    assert (summary["buyers"], summary["repeat_customers"]) == (3, 1)  # only buyer-b came back
    assert summary["by_lifecycle"] == {"new": 1, "sleeping": 1, "churned": 1}
    assert summary["by_class"] == {"important_develop": 1, "important_keep": 1, "general_retain": 1}
    assert summary["grid"][0][0] == 1  # R5, F1
    assert summary["grid"][3][4] == 1  # R2, F5
    assert summary["grid"][4][0] == 1  # R1, F1
    assert (summary["grid_spend"][0][0], summary["grid_spend"][3][4]) == ("500.00", "4000.00")
    assert summary["class_spend"] == {
        "important_develop": "500.00",
        "important_keep": "4000.00",
        "general_retain": "50.00",
    }


async def test_a_buyer_turns_sleeping_on_day_91_without_any_event(
    shop: ShopClient, stack: ServerSet, frozen: None
) -> None:
    await buy(shop, "D-1", "buyer-d", 300, "120.00")
    d = await buy(shop, "D-2", "buyer-d", 90, "120.00")  # last purchase exactly 90 days ago
    assert (await profile(shop, d, 2))["lifecycle"] == "active"

    clock.travel(NOW + timedelta(days=1))  # day 91
    refreshed = await shop.client.post("/api/v1/rfm/refresh", headers=shop.headers())
    assert refreshed.status_code == 200 and refreshed.json()["lifecycle_changes"] == 1
    assert refreshed.json()["status"] == "done"
    after = await shop.client.get(f"/api/v1/customers/{d}", headers=shop.headers())
    assert after.json()["lifecycle"] == "sleeping" and after.json()["r_score"] == 2

    engine = create_async_engine(stack["segmentation"].settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT envelope FROM segmentation.outbox "
                    "WHERE shop_id = :s AND event_type = 'customer.lifecycle_changed' ORDER BY id"
                ),
                {"s": shop.shop_id},
            )
            payloads = [r[0]["payload"] for r in rows]
    finally:
        await engine.dispose()
    assert payloads[-1] == {"customer_id": d, "from": "active", "to": "sleeping"}


async def test_presets_and_custom_thresholds_rescore_the_shop(shop: ShopClient, frozen: None) -> None:
    c = await buy(shop, "E-1", "buyer-e", 200, "2500.00")
    assert scores(await profile(shop, c, 1))[4] == "churned"

    changed = await shop.client.put(
        "/api/v1/rfm/config", json={"preset": "high_ticket"}, headers=shop.headers()
    )
    assert changed.status_code == 200 and changed.json()["active_days"] == 365
    assert changed.json()["rescore"] == {"status": "current", "requested_at": None}  # a small shop: at once
    # High-ticket: R by days [180, 365, 540, 730] → 4; M by yuan [2000, 5000, …] → 2. Its only purchase
    # lies inside the 365-day active window, so the buyer is `new` again rather than churned.
    after = (await shop.client.get(f"/api/v1/customers/{c}", headers=shop.headers())).json()
    assert scores(after) == (4, 1, 2, "general_develop", "new")

    custom = {
        "preset": "custom",
        "window_days": 365,
        "recency_days": [100, 200, 300, 400],
        "frequency": [2, 3, 4, 5],
        "monetary": ["500", "1000", "2000", "2400"],
        "active_days": 250,
        "sleeping_days": 300,
    }
    assert (
        await shop.client.put("/api/v1/rfm/config", json=custom, headers=shop.headers())
    ).status_code == 200
    after = (await shop.client.get(f"/api/v1/customers/{c}", headers=shop.headers())).json()
    assert scores(after) == (4, 1, 5, "important_develop", "new")
    assert (await shop.client.get("/api/v1/rfm/config", headers=shop.headers())).json()["monetary"] == [
        "500.00",
        "1000.00",
        "2000.00",
        "2400.00",
    ]


async def test_bad_configs_are_refused_and_change_nothing(shop: ShopClient) -> None:
    base = {
        "preset": "custom",
        "window_days": 365,
        "recency_days": [30, 60, 90, 180],
        "frequency": [2, 3, 5, 8],
        "monetary": ["100", "300", "1000", "3000"],
        "active_days": 90,
        "sleeping_days": 180,
    }
    cases = [
        (
            {**base, "recency_days": [30, 90, 60, 180]},
            "recency_days: boundaries must strictly increase (30, 90, 60, 180)",
        ),
        ({**base, "frequency": [2, 3]}, "frequency: needs four"),
        ({**base, "sleeping_days": 60}, "sleeping_days: must be greater than active_days"),
        (
            {**base, "monetary": ["a", "b", "c", "d"]},
            "monetary: boundaries must be amounts in yuan (a, b, c, d)",
        ),
        ({"preset": "custom", "window_days": 30}, "a custom config needs"),
        ({"preset": "luxury"}, "preset"),
        ({**base, "colour": "red"}, "colour"),
    ]
    for body, expected in cases:
        response = await shop.client.put("/api/v1/rfm/config", json=body, headers=shop.headers())
        assert response.status_code == 422, (expected, response.text)
        assert expected in response.json()["detail"], response.json()
    assert (await shop.client.get("/api/v1/rfm/config", headers=shop.headers())).json()["preset"] == "default"

    # What was read goes back changed (read, change a threshold, write), `rescore` and all.
    read = (await shop.client.get("/api/v1/rfm/config", headers=shop.headers())).json()
    changed = read | {"preset": "custom", "active_days": 60}
    written = await shop.client.put("/api/v1/rfm/config", json=changed, headers=shop.headers())
    assert written.status_code == 200 and written.json()["active_days"] == 60, written.text


async def test_the_scheduled_refresh_moves_labels_and_runs_on_one_replica_at_a_time(
    shop: ShopClient, stack: ServerSet, frozen: None
) -> None:
    f = await buy(shop, "F-1", "buyer-f", 170, "80.00")
    await buy(shop, "F-0", "buyer-f", 400, "80.00")
    assert (await profile(shop, f, 2))["lifecycle"] == "sleeping"
    clock.travel(NOW + timedelta(days=20))  # 190 days since the last purchase
    db = Database(stack["segmentation"].settings)
    engine = create_async_engine(stack["segmentation"].settings.database_url)
    try:
        async with engine.begin() as other_replica:
            await other_replica.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended('segmentation.rfm_refresh', 0))")
            )
            assert await refresh_all(db) == 0  # another replica holds this round
        assert await refresh_all(db) >= 1
    finally:
        await db.dispose()
        await engine.dispose()
    after = (await shop.client.get(f"/api/v1/customers/{f}", headers=shop.headers())).json()
    assert after["lifecycle"] == "churned"


async def test_an_order_leaving_the_window_lowers_frequency_without_any_event(
    shop: ShopClient, frozen: None
) -> None:
    """Window aggregates are kept on profiles; they must still follow the calendar."""
    await buy(shop, "W-1", "buyer-w", 360, "500.00")  # leaves the 365-day window in six days
    w = await buy(shop, "W-2", "buyer-w", 10, "500.00")
    before = await profile(shop, w, 2)
    assert (before["f_score"], before["m_score"]) == (2, 4)  # 2 orders, 1,000 yuan in the window

    clock.travel(NOW + timedelta(days=3))  # nothing has left the window yet: scores stand
    await shop.client.post("/api/v1/rfm/refresh", headers=shop.headers())
    still = (await shop.client.get(f"/api/v1/customers/{w}", headers=shop.headers())).json()
    assert (still["f_score"], still["m_score"]) == (2, 4)

    clock.travel(NOW + timedelta(days=6))
    refreshed = await shop.client.post("/api/v1/rfm/refresh", headers=shop.headers())
    assert refreshed.status_code == 200 and refreshed.json()["customers_changed"] == 1
    after = (await shop.client.get(f"/api/v1/customers/{w}", headers=shop.headers())).json()
    assert (after["f_score"], after["m_score"]) == (1, 3)  # 1 order, 500 yuan left in the window
    assert after["orders_count"] == 2, "the lifetime aggregates are not windowed"


LIFECYCLE_NULL_FRACTION = text(
    "SELECT null_frac FROM pg_stats WHERE schemaname = 'segmentation' AND tablename = 'profiles' "
    "AND attname = 'lifecycle'"
)


async def test_a_rescore_relabelling_most_profiles_refreshes_the_planner_statistics(
    shop: ShopClient, stack: ServerSet
) -> None:
    # 30,000 buyers of a history, unscored, with statistics taken before scoring (all labels NULL) …
    db = Database(stack["segmentation"].settings)
    params = {"shop": shop.shop_id, "n": 30_000, "now": clock.now()}
    try:
        async with db.transaction() as session:
            await session.execute(
                text(
                    """INSERT INTO segmentation.profile_orders (shop_id, order_id, customer_id, status,
                           paid_fen, refunded_fen, placed_at, source_modified_at)
                       SELECT CAST(:shop AS text), 'ord_' || n, 'cus_' || n, 'completed', 5000, 0,
                              CAST(:now AS timestamptz) - make_interval(days => n % 700), :now
                       FROM generate_series(1, :n) n"""
                ),
                params,
            )
            await session.execute(
                text(
                    """INSERT INTO segmentation.profiles (shop_id, customer_id, orders_count, total_spent_fen,
                           first_order_at, last_order_at)
                       SELECT CAST(:shop AS text), customer_id, 1, paid_fen, placed_at, placed_at
                       FROM segmentation.profile_orders WHERE shop_id = :shop"""
                ),
                params,
            )
            await session.execute(text("ANALYZE segmentation.profiles"))
        async with db.transaction() as session:
            assert await session.scalar(LIFECYCLE_NULL_FRACTION) > 0.5
            settings = await rfm_config.load(session, shop.shop_id)
            changed, _, _ = await rfm.rescore(session, shop.shop_id, settings, clock.now())
            assert changed == 30_000
        # … describe the labels as soon as the rescore commits, not when autovacuum comes round.
        async with db.transaction() as session:
            assert await session.scalar(LIFECYCLE_NULL_FRACTION) < 0.5
    finally:
        await db.dispose()


SCORES_AND_COUNTS = text(
    "SELECT customer_id, r_score, f_score, m_score, rfm_segment, lifecycle, rfm_orders, rfm_spent_fen, "
    "rfm_recount_at FROM segmentation.profiles WHERE shop_id = :shop ORDER BY customer_id"
)


async def test_the_scheduled_refresh_from_kept_counts_agrees_with_counting_every_order(
    shop: ShopClient, stack: ServerSet
) -> None:
    """2,000 buyers with orders over two years (some unpaid, some partly refunded): at each later moment
    the refresh that reads only the orders whose count moved leaves exactly what counting every order
    of the shop leaves, down to the kept counts, while R, lifecycle and the window move with time."""
    db = Database(stack["segmentation"].settings)
    t0 = NOW
    params = {"shop": shop.shop_id, "t0": t0}
    try:
        async with db.transaction() as session:
            await session.execute(
                text(
                    """INSERT INTO segmentation.profile_orders (shop_id, order_id, customer_id, status,
                           paid_fen, refunded_fen, placed_at, source_modified_at)
                       SELECT CAST(:shop AS text), 'ord_' || n, 'cus_' || (n % 2000),
                              CASE WHEN n % 9 = 0 THEN 'closed' ELSE 'completed' END,
                              1000 + (hashint4(n) & 65535), CASE WHEN n % 7 = 0 THEN 500 ELSE 0 END,
                              CAST(:t0 AS timestamptz)
                                - make_interval(secs => (hashint4(n + 1) & 2147483647) % (730 * 86400)),
                              CAST(:t0 AS timestamptz)
                       FROM generate_series(1, 12000) n"""
                ),
                params,
            )
            await session.execute(
                text(
                    """INSERT INTO segmentation.profiles (shop_id, customer_id, orders_count, total_spent_fen,
                           first_order_at, last_order_at)
                       SELECT CAST(:shop AS text), customer_id, count(*), sum(paid_fen - refunded_fen),
                              min(placed_at), max(placed_at)
                       FROM segmentation.profile_orders
                       WHERE shop_id = CAST(:shop AS text) AND status <> 'closed' GROUP BY customer_id"""
                ),
                params,
            )
            # 12,000 rows written at once, as only an import writes them, and the import refreshes the
            # planner's statistics after it: without that, the shared test database's statistics from
            # before made each rescore nest-loop over the orders (1-3 s each instead of ~50 ms).
            await session.execute(text("ANALYZE segmentation.profile_orders"))
            await session.execute(text("ANALYZE segmentation.profiles"))
            settings = await rfm_config.load(session, shop.shop_id)
            assert (await rfm.rescore(session, shop.shop_id, settings, t0))[0] == 2000

        moved_by_refresh = 0
        for days in (0.04, 1, 3, 30, 100, 200, 400):
            at = t0 + timedelta(days=days)
            async with db.transaction() as session:
                changed, _, _ = await rfm.rescore(session, shop.shop_id, settings, at, incremental=True)
                moved_by_refresh += changed
                kept = (await session.execute(SCORES_AND_COUNTS, params)).all()
            async with db.transaction() as session:
                assert (await rfm.rescore(session, shop.shop_id, settings, at))[0] == 0, days
                counted = (await session.execute(SCORES_AND_COUNTS, params)).all()
            assert kept == counted, days
        assert moved_by_refresh > 1000  # time did move labels and scores
    finally:
        await db.dispose()


async def test_the_scheduled_refresh_counts_everything_when_the_clock_went_back(
    shop: ShopClient, stack: ServerSet, frozen: None
) -> None:
    old = await buy(shop, "B-1", "buyer-back", 300, "500.00")  # in the window at NOW, not 100 days on
    await profile(shop, old, 1)
    db = Database(stack["segmentation"].settings)
    try:
        async with db.transaction() as session:
            settings = await rfm_config.load(session, shop.shop_id)
            await rfm.rescore(session, shop.shop_id, settings, NOW + timedelta(days=100))
            assert (
                await session.scalar(
                    text("SELECT f_score FROM segmentation.profiles WHERE shop_id = :shop"),
                    {"shop": shop.shop_id},
                )
            ) == 1
            # Back to NOW: the kept count (no order in the window) is no longer true, so it is redone.
            await rfm.rescore(session, shop.shop_id, settings, NOW, incremental=True)
            rows = await session.execute(
                text("SELECT f_score, rfm_orders FROM segmentation.profiles WHERE shop_id = :shop"),
                {"shop": shop.shop_id},
            )
            assert rows.one() == (1, 1)
    finally:
        await db.dispose()


async def _labels(shop: ShopClient) -> dict[str, int]:
    summary = await shop.client.get("/api/v1/rfm/summary", headers=shop.headers())
    return summary.json()["by_lifecycle"]


async def _rescore_state(shop: ShopClient) -> dict[str, Any]:
    return (await shop.client.get("/api/v1/rfm/config", headers=shop.headers())).json()["rescore"]


async def test_a_large_shop_is_rescored_in_the_background(shop: ShopClient, frozen: None) -> None:
    """Above the inline limit (100,000 customers by default; 20 in the test stack) a change of
    configuration is answered at once with the rescore pending, and the shop's labels follow the new
    thresholds when it is done."""
    buyers = INLINE_RESCORE_LIMIT + 5
    await asyncio.gather(*(buy(shop, f"G-{i}", f"buyer-g{i}", 200, "2500.00") for i in range(buyers)))

    async def all_churned() -> None:
        assert await _labels(shop) == {"churned": buyers}

    await eventually(all_churned, within=30)
    changed = await shop.client.put(
        "/api/v1/rfm/config", json={"preset": "high_ticket"}, headers=shop.headers()
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["preset"] == "high_ticket" and changed.json()["rescore"]["status"] == "pending"
    assert changed.json()["rescore"]["requested_at"] is not None

    async def rescored() -> None:
        assert await _rescore_state(shop) == {"status": "current", "requested_at": None}
        # High-ticket: a purchase 200 days ago lies inside its 365-day active window (see above).
        assert await _labels(shop) == {"new": buyers}

    await eventually(rescored, within=30)

    refreshed = await shop.client.post("/api/v1/rfm/refresh", headers=shop.headers())
    assert refreshed.status_code == 202, refreshed.text
    assert refreshed.json() == {
        "status": "pending",
        "customers_changed": None,
        "lifecycle_changes": None,
        "rfm_class_changes": None,
    }
    await eventually(rescored, within=30)


async def test_a_requested_rescore_left_behind_is_done_by_the_scheduled_refresh(
    shop: ShopClient, stack: ServerSet, frozen: None
) -> None:
    """The replica that took a large shop's change stopped before rescoring: the next scheduled round
    counts the shop afresh under its new configuration and clears the request."""
    customer = await buy(shop, "H-1", "buyer-h", 200, "2500.00")
    assert (await profile(shop, customer, 1))["lifecycle"] == "churned"
    db = Database(stack["segmentation"].settings)
    params = {"shop": shop.shop_id}
    try:
        async with db.transaction() as session:
            # The configuration and the request as the API leaves them, without its task.
            values = rfm_config.PRESETS["high_ticket"].model_dump()
            await session.execute(insert(RfmConfig).values(shop_id=shop.shop_id, **values))
            await session.execute(
                text("INSERT INTO segmentation.rfm_rescore_requests VALUES (:shop, now())"), params
            )
        assert (await _rescore_state(shop))["status"] == "pending"
        await refresh_all(db)
    finally:
        await db.dispose()
    assert await _rescore_state(shop) == {"status": "current", "requested_at": None}
    after = (await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())).json()
    assert after["lifecycle"] == "new"
