"""`GET /api/v1/orders`: newest first, filters, cursor pagination, strict parameters, shop scope."""

from __future__ import annotations

from laoke.testing.factories import order_json
from laoke.testing.plugin import ShopClient


def order(n: int, buyer: str, status: str = "paid", day: int = 1) -> dict[str, object]:
    return order_json(
        f"LIST-{n}",
        buyer=buyer,
        status=status,
        total=f"{n}.00",
        placed_at=f"2026-11-{day:02d}T10:00:00+08:00",
    )


async def seed(shop: ShopClient) -> dict[str, str]:
    customers = {}
    for n, (buyer, status, day) in enumerate(
        [
            ("a", "paid", 1),
            ("b", "completed", 2),
            ("a", "completed", 3),
            ("c", "created", 4),
            ("a", "paid", 5),
        ],
        1,
    ):
        created = await shop.client.post(
            "/api/v1/orders", json=order(n, buyer, status, day), headers=shop.headers()
        )
        assert created.status_code == 201, created.text
        customers[buyer] = created.json()["order"]["customer_id"]
    return customers


async def test_pages_walk_every_order_newest_first_once(shop: ShopClient) -> None:
    await seed(shop)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await shop.client.get("/api/v1/orders", params=params, headers=shop.headers())).json()
        seen += [item["order_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["LIST-5", "LIST-4", "LIST-3", "LIST-2", "LIST-1"]


async def test_filters_combine(shop: ShopClient) -> None:
    customers = await seed(shop)
    params = {"customer_id": customers["a"], "status": "paid"}
    page = (await shop.client.get("/api/v1/orders", params=params, headers=shop.headers())).json()
    assert [item["order_id"] for item in page["items"]] == ["LIST-5", "LIST-1"]
    recent = {"since": "2026-11-03T00:00:00+08:00"}
    page = (await shop.client.get("/api/v1/orders", params=recent, headers=shop.headers())).json()
    assert [item["order_id"] for item in page["items"]] == ["LIST-5", "LIST-4", "LIST-3"]
    assert page["next_cursor"] is None


async def test_other_shops_orders_never_appear(shop: ShopClient, other_shop: ShopClient) -> None:
    await seed(shop)
    page = (await other_shop.client.get("/api/v1/orders", headers=other_shop.headers())).json()
    assert page == {"items": [], "next_cursor": None}


async def test_bad_parameters_are_4xx(shop: ShopClient) -> None:
    for params, status in (
        ({"limit": 0}, 422),
        ({"limit": 201}, 422),
        ({"status": "teleported"}, 422),
        ({"since": "2026-11-03"}, 422),  # no time zone
        ({"cursor": "not-a-cursor"}, 400),
    ):
        response = await shop.client.get("/api/v1/orders", params=params, headers=shop.headers())
        assert response.status_code == status, (params, response.text)
        assert response.json()["error"] in ("validation_error", "bad_request")
