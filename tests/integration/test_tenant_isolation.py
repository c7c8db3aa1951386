"""A key of one shop sees nothing of another: 404 for its order, customer and member."""

from __future__ import annotations

from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient

ORDER = order_json("ISO-1", buyer="shared-buyer-id", total="50.00")


async def test_other_shop_gets_404_for_order_customer_and_member(
    shop: ShopClient, other_shop: ShopClient
) -> None:
    created = (await shop.client.post("/api/v1/orders", json=ORDER, headers=shop.headers())).json()["order"]
    order_id, customer_id = created["id"], created["customer_id"]

    async def visible_to_owner() -> None:
        for path in (f"/api/v1/loyalty/members/{customer_id}", f"/api/v1/customers/{customer_id}"):
            assert (await shop.client.get(path, headers=shop.headers())).status_code == 200

    await eventually(visible_to_owner)
    for path in (
        f"/api/v1/orders/{order_id}",
        f"/api/v1/customers/{customer_id}",
        f"/api/v1/loyalty/members/{customer_id}",
    ):
        response = await other_shop.client.get(path, headers=other_shop.headers())
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


async def test_same_buyer_id_in_two_shops_is_two_customers(shop: ShopClient, other_shop: ShopClient) -> None:
    mine = (await shop.client.post("/api/v1/orders", json=ORDER, headers=shop.headers())).json()["order"]
    theirs = (
        await other_shop.client.post("/api/v1/orders", json=ORDER, headers=other_shop.headers())
    ).json()["order"]
    assert mine["customer_id"] != theirs["customer_id"]
    assert mine["id"] != theirs["id"]
