"""`GET /api/v1/customers/lookup`: a channel identity → the Laoke customer id, within the caller's shop."""

from __future__ import annotations

from laoke.testing.factories import order_json
from laoke.testing.plugin import ShopClient

ORDER = order_json(
    "LK-1", buyer="tb_open_uid_42", nick="小李", status="paid", total="19.90", channel="taobao"
)


async def test_lookup_finds_the_buyer_of_an_order(shop: ShopClient) -> None:
    created = (await shop.client.post("/api/v1/orders", json=ORDER, headers=shop.headers())).json()["order"]
    found = await shop.client.get(
        "/api/v1/customers/lookup",
        params={"channel": "taobao", "external_id": "tb_open_uid_42"},
        headers=shop.headers(),
    )
    assert found.status_code == 200, found.text
    assert found.json() == {
        "customer_id": created["customer_id"],
        "channel": "taobao",
        "external_id": "tb_open_uid_42",
    }


async def test_lookup_is_scoped_to_the_shop_and_channel(shop: ShopClient, other_shop: ShopClient) -> None:
    await shop.client.post("/api/v1/orders", json=ORDER, headers=shop.headers())
    params = {"channel": "taobao", "external_id": "tb_open_uid_42"}
    elsewhere = await other_shop.client.get(
        "/api/v1/customers/lookup", params=params, headers=other_shop.headers()
    )
    assert elsewhere.status_code == 404 and elsewhere.json()["error"] == "not_found"
    other_channel = await shop.client.get(
        "/api/v1/customers/lookup", params={**params, "channel": "shopify"}, headers=shop.headers()
    )
    assert other_channel.status_code == 404


async def test_lookup_validates_its_parameters(shop: ShopClient) -> None:
    for params in (
        {},
        {"channel": "taobao"},
        {"channel": "myspace", "external_id": "x"},
        {"channel": "taobao", "external_id": ""},
    ):
        response = await shop.client.get("/api/v1/customers/lookup", params=params, headers=shop.headers())
        assert response.status_code == 422, params
        assert response.json()["error"] == "validation_error"
