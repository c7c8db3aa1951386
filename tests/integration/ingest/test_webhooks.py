"""Marketplace webhooks through the gateway: real payload shapes, real signatures, redeliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx

from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet, extra_gateway
from services.ingest.signatures import sign_laoke

FIXTURES = Path(__file__).parents[2] / "fixtures" / "webhooks"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def raw(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def b64_hmac(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def shopify(shop: ShopClient, body: bytes, topic: str, event_id: str, **headers: str) -> httpx.Response:
    return await shop.client.post(
        f"/api/v1/webhooks/shopify/{shop.shop_id}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Hmac-Sha256": b64_hmac(body, shop.webhook_secret),
            "X-Shopify-Shop-Domain": "laoke-test.myshopify.com",
            **headers,
        },
    )


async def laoke_signed(
    shop: ShopClient,
    source: str,
    body: bytes,
    *,
    secret: str | None = None,
    ts: int | None = None,
    **headers: str,
) -> httpx.Response:
    return await shop.client.post(
        f"/api/v1/webhooks/{source}/{shop.shop_id}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Laoke-Signature": sign_laoke(body, secret or shop.webhook_secret, ts),
            **headers,
        },
    )


async def get_order(shop: ShopClient, order_id: str) -> dict[str, Any]:
    response = await shop.client.get(f"/api/v1/orders/{order_id}", headers=shop.headers())
    assert response.status_code == 200, response.text
    return response.json()


async def failures(shop: ShopClient) -> list[dict[str, Any]]:
    response = await shop.client.get("/api/v1/ingest/webhook-failures", headers=shop.headers())
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_shopify_order_then_refund_then_redelivery(shop: ShopClient) -> None:
    body = raw(fixture("shopify_order.json"))
    created = await shopify(shop, body, "orders/create", "evt-1")
    assert created.status_code == 200, created.text
    assert created.json()["outcome"] == "created"
    order = await get_order(shop, created.json()["order_id"])
    assert order["channel"] == "shopify" and order["order_id"] == "820982911946154508"
    assert order["status"] == "paid" and order["total_amount"] == "378.00"
    assert order["coupon_codes"] == ["WINTER20"] and order["item_count"] == 2
    assert order["placed_at"].startswith("2026-11-20T01:30:00")

    again = await shopify(shop, body, "orders/create", "evt-1")
    assert again.json()["outcome"] == "duplicate"

    refund = raw(fixture("shopify_refund.json"))
    refunded = await shopify(shop, refund, "refunds/create", "evt-2")
    assert refunded.status_code == 200 and refunded.json()["outcome"] == "updated"
    order = await get_order(shop, created.json()["order_id"])
    assert order["status"] == "partially_refunded" and order["refunded_amount"] == "100.00"

    # Shopify's later orders/updated snapshot carries the same refund: counted once.
    snapshot = fixture("shopify_order.json")
    snapshot |= {
        "financial_status": "partially_refunded",
        "updated_at": "2026-11-21T10:00:05+08:00",
        "refunds": [fixture("shopify_refund.json")],
    }
    updated = await shopify(shop, raw(snapshot), "orders/updated", "evt-3")
    assert updated.json()["outcome"] in ("updated", "unchanged")
    assert (await get_order(shop, created.json()["order_id"]))["refunded_amount"] == "100.00"

    ignored = await shopify(shop, raw({"id": 1}), "products/create", "evt-4")
    assert ignored.status_code == 200 and ignored.json()["outcome"] == "ignored"

    # The buyer is known by Shopify customer id, and the mobile links other channels.
    lookup = await shop.client.get(
        "/api/v1/customers/lookup",
        params={"channel": "shopify", "external_id": "115310627314723954"},
        headers=shop.headers(),
    )
    assert lookup.json()["customer_id"] == order["customer_id"]


async def test_shopify_forged_or_unsigned_is_401_and_kept(shop: ShopClient) -> None:
    body = raw(fixture("shopify_order.json"))
    forged = await shopify(
        shop, body, "orders/create", "evt-x", **{"X-Shopify-Hmac-Sha256": b64_hmac(body, "guess")}
    )
    assert forged.status_code == 401 and "does not match" in forged.json()["detail"]
    tampered = await shop.client.post(
        f"/api/v1/webhooks/shopify/{shop.shop_id}",
        content=body.replace(b"378.00", b"3.78"),
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": b64_hmac(body, shop.webhook_secret),
        },
    )
    assert tampered.status_code == 401
    unsigned = await shop.client.post(
        f"/api/v1/webhooks/shopify/{shop.shop_id}", content=body, headers={"X-Shopify-Topic": "orders/create"}
    )
    assert unsigned.status_code == 401 and "missing X-Shopify-Hmac-Sha256" in unsigned.json()["detail"]

    kept = await failures(shop)
    assert len(kept) == 3 and all(f["status_code"] == 401 for f in kept)
    assert "820982911946154508" in kept[0]["body"]
    assert kept[0]["headers"]["x-shopify-topic"] == "orders/create"
    assert not any("secret" in name for f in kept for name in f["headers"])


async def test_shopify_malformed_json_and_bad_amount_are_422_and_kept(shop: ShopClient) -> None:
    broken = await shopify(shop, b'{"id": 1, "total_price": ', "orders/create", "evt-5")
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
    negative = fixture("shopify_order.json") | {"total_price": "-1.00"}
    bad = await shopify(shop, raw(negative), "orders/create", "evt-6")
    assert bad.status_code == 422 and "total_price" in bad.json()["detail"]
    assert [f["status_code"] for f in await failures(shop)] == [422, 422]
    # A failed delivery is not recorded as processed: the sender's retry, once fixed, goes through.
    fixed = await shopify(shop, raw(fixture("shopify_order.json")), "orders/create", "evt-6")
    assert fixed.json()["outcome"] == "created"


async def test_woocommerce_guest_order_ping_and_bad_status(shop: ShopClient) -> None:
    ping = await shop.client.post(
        f"/api/v1/webhooks/woocommerce/{shop.shop_id}",
        content=b"webhook_id=15",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ping.status_code == 200 and ping.json()["outcome"] == "ignored"

    def post(payload: dict[str, Any], delivery: str) -> Any:
        body = raw(payload)
        return shop.client.post(
            f"/api/v1/webhooks/woocommerce/{shop.shop_id}",
            content=body,
            headers={
                "X-WC-Webhook-Topic": "order.created",
                "X-WC-Webhook-Resource": "order",
                "X-WC-Webhook-Event": "created",
                "X-WC-Webhook-Delivery-ID": delivery,
                "X-WC-Webhook-Signature": b64_hmac(body, shop.webhook_secret),
                "X-WC-Webhook-Source": "https://shop.example.com/",
            },
        )

    created = await post(fixture("woocommerce_order.json"), "d-1")
    assert created.status_code == 200, created.text
    order = await get_order(shop, created.json()["order_id"])
    assert order["status"] == "paid" and order["total_amount"] == "29.35" and order["item_count"] == 3
    assert order["placed_at"].startswith("2026-11-20T01:30:00")
    lookup = await shop.client.get(
        "/api/v1/customers/lookup",
        params={"channel": "woocommerce", "external_id": "john.doe@example.com"},
        headers=shop.headers(),
    )
    assert lookup.json()["customer_id"] == order["customer_id"]
    assert (await post(fixture("woocommerce_order.json"), "d-1")).json()["outcome"] == "duplicate"

    trash = await post(fixture("woocommerce_order.json") | {"status": "trash"}, "d-2")
    assert trash.status_code == 422 and "unknown WooCommerce status 'trash'" in trash.json()["detail"]


async def test_taobao_trade_bare_and_as_tmc_messages(shop: ShopClient) -> None:
    trade = fixture("taobao_trade.json")
    pushed = await laoke_signed(shop, "taobao", raw(trade))
    assert pushed.status_code == 200, pushed.text
    order = await get_order(shop, pushed.json()["order_id"])
    assert (
        order["status"] == "paid" and order["paid_amount"] == "256.00" and order["total_amount"] == "266.00"
    )
    # Shop-local wall clock (Asia/Shanghai) → UTC.
    assert order["placed_at"].startswith("2026-11-20T01:30:00") and order["item_count"] == 3
    assert (await laoke_signed(shop, "taobao", raw(trade))).json()["outcome"] == "duplicate"

    finished = trade | {
        "status": "TRADE_FINISHED",
        "end_time": "2026-11-25 10:00:00",
        "modified": "2026-11-25 10:00:00",
    }
    message = {"id": "tmc-1001", "topic": "taobao_trade_TradeSuccess", "content": json.dumps(finished)}
    success = await laoke_signed(shop, "taobao", raw(message))
    assert success.json()["outcome"] == "updated"
    assert (await get_order(shop, order["id"]))["status"] == "completed"

    refund = {
        "id": "tmc-1002",
        "topic": "taobao_refund_RefundSuccess",
        "content": {
            "refund_id": "99887766",
            "tid": trade["tid"],
            "oid": trade["orders"]["order"][1]["oid"],
            "refund_fee": "10.00",
            "modified": "2026-11-26 08:00:00",
            "buyer_nick": trade["buyer_nick"],
        },
    }
    refunded = await laoke_signed(shop, "taobao", raw(refund))
    assert refunded.json()["outcome"] == "updated"
    after = await get_order(shop, order["id"])
    assert after["status"] == "partially_refunded" and after["refunded_amount"] == "10.00"
    # The next full snapshot names the same sub-order as refunded: still 10.00, not 20.00.
    snapshot = finished | {"modified": "2026-11-26 08:00:01"}
    snapshot["orders"]["order"][1] |= {"refund_status": "SUCCESS"}
    await laoke_signed(shop, "taobao", raw(snapshot))
    assert (await get_order(shop, order["id"]))["refunded_amount"] == "10.00"


async def test_a_taobao_trade_refunded_in_part_and_then_finished_earns_its_points(shop: ShopClient) -> None:
    trade = fixture("taobao_trade.json")
    pushed = await laoke_signed(shop, "taobao", raw(trade))
    order = await get_order(shop, pushed.json()["order_id"])
    refund = {
        "id": "tmc-2001",
        "topic": "taobao_refund_RefundSuccess",
        "content": {
            "refund_id": "55667788",
            "tid": trade["tid"],
            "oid": trade["orders"]["order"][1]["oid"],
            "refund_fee": "16.00",
            "modified": "2026-11-21 08:00:00",
        },
    }
    assert (await laoke_signed(shop, "taobao", raw(refund))).json()["outcome"] == "updated"
    finished = trade | {
        "status": "TRADE_FINISHED",
        "end_time": "2026-11-25 10:00:00",
        "modified": "2026-11-25 10:00:00",
    }
    finished["orders"]["order"][1] |= {"refund_status": "SUCCESS", "refund_fee": "16.00"}
    assert (await laoke_signed(shop, "taobao", raw(finished))).json()["outcome"] == "updated"
    done = await get_order(shop, order["id"])
    # Still partially refunded, and now completed: loyalty credits the 240.00 kept (1 point a yuan).
    assert (done["status"], done["refunded_amount"], done["completed_at"] is not None) == (
        "partially_refunded",
        "16.00",
        True,
    )

    async def credited() -> None:
        member = await shop.client.get(
            f"/api/v1/loyalty/members/{order['customer_id']}", headers=shop.headers()
        )
        assert member.json()["points_available"] == 240, member.text

    await eventually(credited, within=20)


async def test_taobao_bad_payloads_are_422(shop: ShopClient) -> None:
    trade = fixture("taobao_trade.json")
    cases = [
        (trade | {"status": "WAIT_FOR_GODOT"}, "unknown Taobao trade status 'WAIT_FOR_GODOT'"),
        (trade | {"payment": "-3.00"}, "payment"),
        (trade | {"payment": "三块"}, "payment"),
        (
            {k: v for k, v in trade.items() if k not in ("buyer_nick", "buyer_open_uid", "receiver_mobile")},
            "buyer",
        ),
        (trade | {"created": "20/11/2026"}, "yyyy-MM-dd HH:mm:ss"),
        (
            trade | {"modified": "2062-11-20 10:00:00"},
            "modified_at 2062-11-20T10:00:00+08:00 is more than a day",
        ),
    ]
    for payload, expected in cases:
        response = await laoke_signed(shop, "taobao", raw(payload))
        assert response.status_code == 422, (expected, response.text)
        assert expected in response.json()["detail"], response.json()


async def test_laoke_signature_freshness_and_rotation(shop: ShopClient) -> None:
    body = raw(order_json("G-1", buyer="g-buyer"))
    stale = await laoke_signed(shop, "generic", body, ts=int(time.time()) - 301)
    assert stale.status_code == 401 and "older" in stale.json()["detail"].replace(
        "more than 300 s old", "older"
    )
    wrong = await laoke_signed(shop, "generic", body, secret="not-the-secret")
    assert wrong.status_code == 401

    rotated = await shop.client.post("/api/v1/webhook-secret/rotate", headers=shop.headers())
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["webhook_secret"]
    old = await laoke_signed(shop, "generic", body)  # the previous secret still works in the grace period
    assert old.status_code == 200 and old.json()["outcome"] == "created"
    # A sender mid-rotation signs with two secrets; one valid v1 is enough.
    ts = int(time.time())
    second = raw(order_json("G-2", buyer="g-buyer"))
    both = sign_laoke(second, "some-old-secret", ts) + "," + sign_laoke(second, new_secret, ts).split(",")[1]
    response = await shop.client.post(
        f"/api/v1/webhooks/generic/{shop.shop_id}", content=second, headers={"X-Laoke-Signature": both}
    )
    assert response.status_code == 200 and response.json()["outcome"] == "created"

    no_grace = await shop.client.post(
        "/api/v1/webhook-secret/rotate", params={"grace_hours": 0}, headers=shop.headers()
    )
    assert (
        await laoke_signed(shop, "generic", raw(order_json("G-3", buyer="b")), secret=new_secret)
    ).status_code == 401
    third = await laoke_signed(
        shop, "generic", raw(order_json("G-3", buyer="b")), secret=no_grace.json()["webhook_secret"]
    )
    assert third.status_code == 200


async def test_generic_redelivery_and_unknown_shop(shop: ShopClient) -> None:
    body = raw(order_json("G-9", buyer="g9"))
    first = await laoke_signed(shop, "generic", body)
    assert first.json()["outcome"] == "created"
    assert (await laoke_signed(shop, "generic", body)).json()["outcome"] == "duplicate"
    unknown = await shop.client.post(
        "/api/v1/webhooks/generic/shp_doesnotexist",
        content=body,
        headers={"X-Laoke-Signature": sign_laoke(body, shop.webhook_secret)},
    )
    assert unknown.status_code == 401


async def test_a_webhook_for_another_shop_is_refused(shop: ShopClient, other_shop: ShopClient) -> None:
    # Signed with shop A's secret but sent to shop B's URL.
    body = raw(order_json("G-10", buyer="x"))
    response = await shop.client.post(
        f"/api/v1/webhooks/generic/{other_shop.shop_id}",
        content=body,
        headers={"X-Laoke-Signature": sign_laoke(body, shop.webhook_secret)},
    )
    assert response.status_code == 401


async def test_webhooks_are_rate_limited_per_shop(shop: ShopClient, stack: ServerSet) -> None:
    async with extra_gateway(stack, webhook_rate_limit_per_second=0.5, webhook_rate_limit_burst=2) as limited:
        codes = []
        for i in range(3):
            body = raw(order_json(f"RL-{i}", buyer="rl"))
            response = await shop.client.post(
                f"{limited.url}/api/v1/webhooks/generic/{shop.shop_id}",
                content=body,
                headers={"X-Laoke-Signature": sign_laoke(body, shop.webhook_secret)},
            )
            codes.append(response.status_code)
    assert codes == [200, 200, 429]
    assert response.headers["retry-after"] == "2"


async def test_an_unknown_webhook_source_is_a_json_404(shop: ShopClient) -> None:
    body = raw(order_json("U-1", buyer="u"))
    response = await shop.client.post(
        f"/api/v1/webhooks/ebay/{shop.shop_id}",
        content=body,
        headers={"X-Laoke-Signature": sign_laoke(body, shop.webhook_secret)},
    )
    assert response.status_code == 404 and response.json()["error"] == "not_found"
