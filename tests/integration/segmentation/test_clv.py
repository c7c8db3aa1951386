"""Fitting a shop's CLV model through the API and using its predictions."""

from __future__ import annotations

import asyncio

from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from tests.integration.segmentation.shopping import buy


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
    fitted = await shop.client.post("/api/v1/clv/fit", json={}, headers=shop.headers())
    assert fitted.status_code == 200, fitted.text
    model = fitted.json()
    assert model["customers"] == 24 and model["time_unit"] == "days"
    assert all(v > 0 for v in model["bg_nbd"].values())
    assert (await shop.client.get("/api/v1/clv/model", headers=shop.headers())).json()["customers"] == 24

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
