"""Driving messaging through the gateway: buyers, segments, templates, and what the local SMTP server
and SMS endpoint received."""

from __future__ import annotations

from typing import Any

import httpx

from laoke.devstack.providers import (
    LOCAL_ACCESS_KEY_ID,
    LOCAL_ACCESS_KEY_SECRET,
    LOCAL_TENCENT_SECRET_ID,
    LOCAL_TENCENT_SECRET_KEY,
)
from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import Isolated, ShopClient
from services.messaging.settings import MessagingSettings

NO_QUIET_HOURS = {"quiet_start": None, "quiet_end": None}


def isolated_settings(isolated: Isolated, **overrides: Any) -> MessagingSettings:
    """Messaging's settings on the test's own database and broker (nothing else sends from them)."""
    return MessagingSettings(
        database_url=isolated.database_url,
        kafka_bootstrap_servers=isolated.broker.bootstrap_servers,
        environment="test",
        db_pool_size=2,
        **overrides,
    )


async def call(shop: ShopClient, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
    return await shop.client.request(method, path, json=body, params=params or None, headers=shop.headers())


async def ok(shop: ShopClient, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = await call(shop, method, path, body)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def buyer(
    shop: ShopClient,
    external_id: str,
    *,
    name: str = "王小明",
    mobile: str | None = None,
    email: str | None = None,
    status: str = "completed",
    order_id: str | None = None,
    total: str = "100.00",
    placed_at: str = "2026-11-01T10:00:00+08:00",
    **extra: Any,
) -> str:
    """An order of a buyer (with contact details); returns the customer id."""
    buyer_json = {"external_id": external_id, "nick": name}
    if mobile:
        buyer_json["mobile"] = mobile
    if email:
        buyer_json["email"] = email
    body = order_json(
        order_id or f"O-{external_id}",
        buyer=external_id,
        status=status,
        total=total,
        placed_at=placed_at,
        **extra,
    )
    body["buyer"] = buyer_json
    response = await call(shop, "POST", "/api/v1/orders", body)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["order"]["customer_id"])


async def segment_of_everyone(shop: ShopClient, size: int) -> str:
    """A segment of every buyer with an order, once segmentation has seen `size` of them."""
    created = await ok(
        shop,
        "POST",
        "/api/v1/segments",
        {"name": "全部老客", "rule": {"all": [{"field": "orders_count", "op": "gte", "value": 1}]}},
        201,
    )

    async def full() -> str:
        current = await ok(shop, "GET", f"/api/v1/segments/{created['id']}")
        assert current["size"] == size, current
        return str(current["id"])

    return await eventually(full, within=30)


async def template(shop: ShopClient, channel: str, body: str, subject: str | None = None) -> str:
    payload: dict[str, Any] = {"name": f"{channel} 模板", "channel": channel, "body": body}
    if subject:
        payload["subject"] = subject
    return str((await ok(shop, "POST", "/api/v1/templates", payload, 201))["id"])


async def configure_sms(shop: ShopClient, **overrides: Any) -> None:
    await ok(
        shop,
        "PUT",
        "/api/v1/messaging/channels/sms",
        {
            "provider": "aliyun",
            "access_key_id": LOCAL_ACCESS_KEY_ID,
            "access_key_secret": LOCAL_ACCESS_KEY_SECRET,
            "sign_name": "老客小店",
            **overrides,
        },
    )


TENCENT_APP_ID = "1400000001"


async def configure_tencent_sms(shop: ShopClient, **overrides: Any) -> None:
    """The SMS channel on Tencent Cloud, with the local stand-in's keys."""
    tencent = {
        "provider": "tencent",
        "access_key_id": LOCAL_TENCENT_SECRET_ID,
        "access_key_secret": LOCAL_TENCENT_SECRET_KEY,
        "sdk_app_id": TENCENT_APP_ID,
    }
    await configure_sms(shop, **(tencent | overrides))


async def campaign_done(shop: ShopClient, campaign_id: str, within: float = 30) -> dict[str, Any]:
    async def done() -> dict[str, Any]:
        current = await ok(shop, "GET", f"/api/v1/campaigns/{campaign_id}")
        if current["status"] != "completed":
            # Why each message is where it is (a retry's reason, its attempts), for a run that times out.
            waiting = [
                (m["status"], m.get("attempts"), m.get("reason"))
                for m in await messages(shop, campaign_id=campaign_id)
                if m["status"] not in ("sent", "delivered")
            ]
            raise AssertionError(f"campaign not completed: {current}; messages not sent: {waiting}")
        return dict(current)

    return await eventually(done, within=within)


async def messages(shop: ShopClient, **filters: Any) -> list[dict[str, Any]]:
    response = await call(shop, "GET", "/api/v1/messaging/messages", **filters, limit=500)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])
