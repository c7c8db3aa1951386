"""Customer analytics by month, against a hand count."""

from __future__ import annotations

from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient


async def order(shop: ShopClient, order_id: str, buyer: str, when: str, total: str) -> None:
    body = order_json(order_id, buyer=buyer, total=total, placed_at=when, completed_at=when)
    assert (await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())).status_code == 201


async def test_months_of_new_returning_repeat_and_revenue(shop: ShopClient, frozen: None) -> None:
    # January: x (new, 2 orders), y (new). March: x returns, z is new. (Times are Beijing time.)
    await order(shop, "1", "x", "2026-01-05T10:00:00+08:00", "100.00")
    await order(shop, "2", "x", "2026-01-20T10:00:00+08:00", "50.00")
    await order(shop, "3", "y", "2026-01-31T23:30:00+08:00", "30.00")  # still January in Shanghai
    await order(shop, "4", "x", "2026-03-02T09:00:00+08:00", "70.00")
    await order(shop, "5", "z", "2026-03-15T09:00:00+08:00", "20.00")

    async def months() -> list[dict[str, object]]:
        response = await shop.client.get(
            "/api/v1/analytics/customers",
            params={
                "from": "2026-01-01T00:00:00+08:00",
                "to": "2026-04-01T00:00:00+08:00",
                "interval": "month",
            },
            headers=shop.headers(),
        )
        assert response.status_code == 200, response.text
        buckets = response.json()["buckets"]
        assert sum(b["active_customers"] for b in buckets) == 4
        return buckets

    jan, feb, mar = await eventually(months, within=20)
    assert jan["start"].startswith("2026-01-01T00:00:00+08:00")
    assert (jan["new_customers"], jan["active_customers"], jan["returning_customers"]) == (2, 2, 0)
    assert jan["repeat_purchase_rate"] == 0.5 and jan["revenue_new"] == "180.00"
    assert (feb["active_customers"], feb["new_customers"]) == (0, 0)
    assert (mar["new_customers"], mar["returning_customers"]) == (1, 1)
    assert (mar["revenue_new"], mar["revenue_returning"]) == ("20.00", "70.00")
    # y last bought 2026-01-31 and churns 180 days later (July): none churned in this range.
    assert [b["churned_customers"] for b in (jan, feb, mar)] == [0, 0, 0]


async def test_churn_lands_in_the_month_the_boundary_is_crossed(shop: ShopClient, frozen: None) -> None:
    await order(shop, "1", "w", "2025-10-10T10:00:00+08:00", "10.00")  # + 180 days = 2026-04-08
    await order(shop, "2", "v", "2025-12-20T10:00:00+08:00", "10.00")  # + 180 days = 2026-06-18

    async def months() -> list[dict[str, object]]:
        response = await shop.client.get(
            "/api/v1/analytics/customers",
            params={"from": "2026-04-01T00:00:00+08:00", "to": "2026-07-01T00:00:00+08:00"},
            headers=shop.headers(),
        )
        buckets = response.json()["buckets"]
        assert sum(b["churned_customers"] for b in buckets) == 2
        return buckets

    apr, may, jun = await eventually(months, within=20)
    assert (apr["churned_customers"], may["churned_customers"], jun["churned_customers"]) == (1, 0, 1)
    assert apr["churn_rate"] == 0.5 and jun["churn_rate"] == 1.0


async def test_bad_ranges_are_refused(shop: ShopClient) -> None:
    cases = [
        ({"from": "2026-02-01T00:00:00+08:00", "to": "2026-01-01T00:00:00+08:00"}, "`to` must be after"),
        (
            {"from": "2020-01-01T00:00:00+08:00", "to": "2026-01-01T00:00:00+08:00", "interval": "day"},
            "at most 400",
        ),
        (
            {"from": "2026-01-01T00:00:00+08:00", "to": "2026-02-01T00:00:00+08:00", "timezone": "Mars/Base"},
            "Mars",
        ),
        ({"from": "2026-01-01", "to": "2026-02-01T00:00:00+08:00"}, "from"),
    ]
    for params, expected in cases:
        response = await shop.client.get("/api/v1/analytics/customers", params=params, headers=shop.headers())
        assert response.status_code == 422, (expected, response.text)
        assert expected in response.json()["detail"], response.json()
