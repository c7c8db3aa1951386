"""Fitting a shop's CLV model through the API and using its predictions."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from laoke.kit.db import Database
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import CLV_INLINE_FIT_LIMIT, ServerSet
from services.segmentation.schedule import refresh_all
from tests.integration.segmentation.shopping import buy

_NO_REQUEST = {"requested_at": None, "as_of": None, "failed_at": None, "error": None}


async def _fit_state(shop: ShopClient) -> dict[str, Any]:
    response = await shop.client.get("/api/v1/clv/fit", headers=shop.headers())
    assert response.status_code == 200, response.text
    return response.json()


async def _loyal_and_one_off_buyers(shop: ShopClient, pairs: int) -> None:
    """`pairs` buyers who keep coming back and as many who bought once, long ago; until all are profiled."""
    posts = []
    for i in range(pairs):
        for k in range(3):
            posts.append(buy(shop, f"L{i}-{k}", f"loyal-{i}", 300 - k * 90 - i, "120.00"))
        posts.append(buy(shop, f"O{i}", f"once-{i}", 400 + i * 3, "60.00"))
    await asyncio.gather(*posts)

    async def all_profiled() -> None:
        listed = await shop.client.get("/api/v1/customers", params={"limit": "200"}, headers=shop.headers())
        assert sum(c["orders_count"] for c in listed.json()["items"]) == 4 * pairs

    await eventually(all_profiled, within=30)


async def test_fit_predict_and_segment_by_prediction(shop: ShopClient, frozen: None) -> None:
    # 24 buyers: loyal ones who keep coming back, and one-off buyers from long ago.
    posts = []
    for i in range(12):
        for k in range(4):
            posts.append(buy(shop, f"L{i}-{k}", f"loyal-{i}", 300 - k * 90 - i, "120.00"))
        posts.append(buy(shop, f"O{i}", f"once-{i}", 400 + i * 3, "60.00"))
    ids = await asyncio.gather(*posts)
    loyal, once = ids[3], ids[4]

    async def all_profiled() -> None:
        listed = await shop.client.get("/api/v1/customers", params={"limit": "200"}, headers=shop.headers())
        assert sum(c["orders_count"] for c in listed.json()["items"]) == 60

    await eventually(all_profiled, within=30)
    assert await _fit_state(shop) == {**_NO_REQUEST, "status": "none", "model": None}
    fitted = await shop.client.post("/api/v1/clv/fit", json={}, headers=shop.headers())
    assert fitted.status_code == 200, fitted.text
    model = fitted.json()
    assert model["customers"] == 24 and model["time_unit"] == "days"
    assert all(v > 0 for v in model["bg_nbd"].values())
    assert (await shop.client.get("/api/v1/clv/model", headers=shop.headers())).json()["customers"] == 24
    assert await _fit_state(shop) == {**_NO_REQUEST, "status": "done", "model": model}

    a = (await shop.client.get(f"/api/v1/customers/{loyal}", headers=shop.headers())).json()
    b = (await shop.client.get(f"/api/v1/customers/{once}", headers=shop.headers())).json()
    assert 0 < b["p_alive"] <= 1 and 0 < a["p_alive"] <= 1
    assert a["expected_purchases_90d"] > b["expected_purchases_90d"]
    assert float(a["clv_365d"]) > float(b["clv_365d"])

    # Halfway between a one-off and a loyal buyer (the API rounds, so not exactly at either).
    middle = (a["expected_purchases_90d"] + b["expected_purchases_90d"]) / 2
    rule = {"field": "expected_purchases_90d", "op": "gt", "value": middle}
    preview = await shop.client.post("/api/v1/segments/preview", json={"rule": rule}, headers=shop.headers())
    assert preview.json()["size"] == 12  # the loyal buyers


async def test_fit_without_history_is_refused(shop: ShopClient) -> None:
    response = await shop.client.post(
        "/api/v1/clv/fit", json={"as_of": "2000-01-01T00:00:00+08:00"}, headers=shop.headers()
    )
    assert response.status_code == 422 and "cannot fit" in response.json()["detail"]
    assert (await shop.client.get("/api/v1/clv/model", headers=shop.headers())).status_code == 404


async def test_a_large_shop_is_fitted_in_the_background(shop: ShopClient, frozen: None) -> None:
    """Above the inline limit (100,000 customers by default; 30 in the test stack) a fit is answered at
    once with 202 and runs in the background; one that cannot be made says why and keeps the model."""
    pairs = CLV_INLINE_FIT_LIMIT // 2 + 3
    await _loyal_and_one_off_buyers(shop, pairs)

    asked = await shop.client.post("/api/v1/clv/fit", json={}, headers=shop.headers())
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "pending" and asked.json()["model"] is None
    assert asked.json()["requested_at"] is not None

    async def fitted() -> dict[str, Any]:
        state = await _fit_state(shop)
        assert state["status"] == "done", state
        return state["model"]

    model = await eventually(fitted, within=30)
    assert model["customers"] == 2 * pairs
    assert (await shop.client.get("/api/v1/clv/model", headers=shop.headers())).json() == model
    listed = await shop.client.get("/api/v1/customers", params={"limit": "200"}, headers=shop.headers())
    assert all(c["p_alive"] is not None and float(c["clv_365d"]) >= 0 for c in listed.json()["items"])

    # Nobody had bought by 2000: the background fit fails, says why, and the model stays.
    asked = await shop.client.post(
        "/api/v1/clv/fit", json={"as_of": "2000-01-01T00:00:00+08:00"}, headers=shop.headers()
    )
    assert asked.status_code == 202 and asked.json()["model"] == model

    async def failed() -> dict[str, Any]:
        state = await _fit_state(shop)
        assert state["status"] == "failed", state
        return state

    state = await eventually(failed, within=30)
    assert "cannot fit: at least 10 customers" in state["error"] and state["failed_at"] is not None
    assert state["as_of"] is not None and state["model"] == model


async def test_a_requested_fit_left_behind_is_done_by_the_scheduled_refresh(
    shop: ShopClient, stack: ServerSet, frozen: None
) -> None:
    """The replica that took a large shop's fit stopped before fitting: the next scheduled round fits."""
    await _loyal_and_one_off_buyers(shop, 6)
    db = Database(stack["segmentation"].settings)
    try:
        async with db.transaction() as session:  # the request as the API leaves it, without its task
            await session.execute(
                text(
                    "INSERT INTO segmentation.clv_fit_requests (shop_id, requested_at) VALUES (:shop, now())"
                ),
                {"shop": shop.shop_id},
            )
        assert (await _fit_state(shop))["status"] == "pending"
        await refresh_all(db)
    finally:
        await db.dispose()
    state = await _fit_state(shop)
    assert state["status"] == "done" and state["model"]["customers"] == 12
