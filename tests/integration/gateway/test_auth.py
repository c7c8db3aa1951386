"""API keys at the gateway: missing, malformed, wrong, revoked, scoped."""

from __future__ import annotations

import httpx

from laoke.testing.plugin import ShopClient
from laoke.testing.servers import TEST_ADMIN_TOKEN


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["detail"]


async def test_missing_key_is_401(gateway: httpx.AsyncClient) -> None:
    assert_error(await gateway.get("/api/v1/me"), 401, "unauthorized")
    assert_error(await gateway.get("/api/v1/orders/ord_x"), 401, "unauthorized")


async def test_malformed_and_wrong_keys_are_401(shop: ShopClient) -> None:
    for key in ("nonsense", "lk_onlyid", "Basic abc", shop.api_key[:-2] + "xx", "lk_ffffffffffff_secret"):
        response = await shop.client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert_error(response, 401, "unauthorized")


async def test_me_shows_shop_and_key(shop: ShopClient) -> None:
    response = await shop.client.get("/api/v1/me", headers=shop.headers())
    assert response.status_code == 200
    body = response.json()
    assert body["shop_id"] == shop.shop_id
    assert body["timezone"] == "Asia/Shanghai"
    assert set(body["key"]["scopes"]) == {"read", "write", "pii", "keys"}


async def test_key_is_shown_once_and_stored_hashed(shop: ShopClient) -> None:
    created = await shop.client.post(
        "/api/v1/keys", json={"name": "ERP", "scopes": ["read"]}, headers=shop.headers()
    )
    assert created.status_code == 201, created.text
    assert created.json()["api_key"].startswith("lk_")
    listed = await shop.client.get("/api/v1/keys", headers=shop.headers())
    assert listed.status_code == 200
    assert all("api_key" not in k for k in listed.json()["items"])
    assert {k["name"] for k in listed.json()["items"]} == {"default", "ERP"}


async def test_revoked_key_is_refused_at_once(shop: ShopClient) -> None:
    created = (
        await shop.client.post(
            "/api/v1/keys", json={"name": "temp", "scopes": ["read"]}, headers=shop.headers()
        )
    ).json()
    assert (await shop.client.get("/api/v1/me", headers=shop.headers(created["api_key"]))).status_code == 200
    revoked = await shop.client.delete(f"/api/v1/keys/{created['id']}", headers=shop.headers())
    assert revoked.status_code == 204
    assert_error(
        await shop.client.get("/api/v1/me", headers=shop.headers(created["api_key"])), 401, "unauthorized"
    )
    # Revoking twice, or a key that does not exist, is a 404.
    assert_error(
        await shop.client.delete(f"/api/v1/keys/{created['id']}", headers=shop.headers()), 404, "not_found"
    )


async def test_read_only_key_cannot_write(shop: ShopClient) -> None:
    read_only = (
        await shop.client.post(
            "/api/v1/keys", json={"name": "bi", "scopes": ["read"]}, headers=shop.headers()
        )
    ).json()["api_key"]
    response = await shop.client.post("/api/v1/orders", json={}, headers=shop.headers(read_only))
    assert_error(response, 403, "forbidden")
    assert "write" in response.json()["detail"]
    # ... and cannot manage keys.
    assert_error(await shop.client.get("/api/v1/keys", headers=shop.headers(read_only)), 403, "forbidden")


async def test_key_cannot_grant_scopes_it_lacks(shop: ShopClient) -> None:
    manager = (
        await shop.client.post(
            "/api/v1/keys", json={"name": "mgr", "scopes": ["read", "keys"]}, headers=shop.headers()
        )
    ).json()["api_key"]
    response = await shop.client.post(
        "/api/v1/keys", json={"name": "x", "scopes": ["pii"]}, headers=shop.headers(manager)
    )
    assert_error(response, 403, "forbidden")


async def test_unknown_scope_is_422(shop: ShopClient) -> None:
    response = await shop.client.post(
        "/api/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=shop.headers()
    )
    assert_error(response, 422, "validation_error")


async def test_other_shops_key_cannot_be_revoked(shop: ShopClient, other_shop: ShopClient) -> None:
    theirs = (await other_shop.client.get("/api/v1/keys", headers=other_shop.headers())).json()["items"][0]
    assert_error(
        await shop.client.delete(f"/api/v1/keys/{theirs['id']}", headers=shop.headers()), 404, "not_found"
    )
    assert (await other_shop.client.get("/api/v1/me", headers=other_shop.headers())).status_code == 200


async def test_admin_api_needs_the_admin_token(gateway: httpx.AsyncClient, shop: ShopClient) -> None:
    assert_error(await gateway.post("/api/v1/admin/shops", json={"name": "x"}), 401, "unauthorized")
    wrong = {"Authorization": "Bearer not-the-token"}
    assert_error(
        await gateway.post("/api/v1/admin/shops", json={"name": "x"}, headers=wrong), 401, "unauthorized"
    )
    # A shop key is not an admin token.
    assert_error(
        await gateway.post("/api/v1/admin/shops", json={"name": "x"}, headers=shop.headers()),
        401,
        "unauthorized",
    )


async def test_shop_creation_validates_input(gateway: httpx.AsyncClient) -> None:
    admin = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    for body in (
        {"name": ""},
        {"name": "  "},
        {"name": "x", "timezone": "Mars/Olympus"},
        {"name": "x", "currency": "rmb"},
    ):
        assert_error(
            await gateway.post("/api/v1/admin/shops", json=body, headers=admin), 422, "validation_error"
        )
    created = await gateway.post(
        "/api/v1/admin/shops",
        json={"name": "东京店", "timezone": "Asia/Tokyo", "currency": "JPY"},
        headers=admin,
    )
    assert created.status_code == 201
    assert created.json()["timezone"] == "Asia/Tokyo"
    assert created.json()["webhook_secret"]
