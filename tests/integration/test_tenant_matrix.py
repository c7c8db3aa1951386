"""Tenant isolation, generated from the gateway's OpenAPI document: shop B's key against every operation
that names an object of shop A answers 404 (or, where the operation acts on B's own namespace, shows
nothing of A), every list B reads holds nothing of A, and A's objects are unchanged afterwards.

An operation whose path names an object this test does not know how to make fails the test, so a new
endpoint cannot be forgotten: teach `shop_a_objects` to make one.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from tests.integration.messaging.helpers import NO_QUIET_HOURS, buyer, call, ok

MARK = "TENANTA"  # in every name shop A gives its objects: B must never see it
# Authenticated by the marketplace's or the buyer's signature, not by an API key (tests of their own).
PUBLIC = re.compile(r"^/api/v1/webhooks/")
ADMIN = re.compile(r"^/api/v1/admin/")
# Path values that are B's own settings, not A's objects.
OWN_VALUES = {"kind": "unpaid_reminder", "channel": "inapp"}


async def shop_a_objects(shop: ShopClient) -> dict[str, str]:
    """One of everything shop A can own, named with the mark; keyed by the path parameter that names it
    (message templates and coupon templates share `template_id`: see `value_for`)."""
    customer = await buyer(shop, "tenant-a-buyer", name=f"{MARK}-王", mobile="13912340000", total="88.00")

    async def profiled() -> None:
        assert (await call(shop, "GET", f"/api/v1/customers/{customer}")).status_code == 200

    await eventually(profiled, within=20)
    order = (await call(shop, "GET", "/api/v1/orders", None, customer_id=customer)).json()["items"][0]["id"]
    await ok(shop, "POST", f"/api/v1/customers/{customer}/tags", {"tags": [f"{MARK}-tag"]})
    segment = await ok(
        shop,
        "POST",
        "/api/v1/segments",
        {"name": f"{MARK}-segment", "rule": {"field": "orders_count", "op": "gte", "value": 1}},
        201,
    )
    group = await ok(shop, "POST", "/api/v1/groups", {"name": f"{MARK}-group"}, 201)
    await ok(shop, "POST", f"/api/v1/groups/{group['id']}/members", {"customer_ids": [customer]})
    template = await ok(
        shop,
        "POST",
        "/api/v1/templates",
        {"name": f"{MARK}-tpl", "channel": "inapp", "body": f"{MARK} 你好"},
        201,
    )
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {
            "name": f"{MARK}-campaign",
            "segment_id": segment["id"],
            "channel": "inapp",
            "template_id": template["id"],
        },
        201,
    )
    # Whatever the hour the suite runs at: the default quiet hours would hold the message back.
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    launched = await call(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/launch")
    assert launched.status_code in (200, 201, 202), launched.text

    async def delivered() -> str:
        inbox = await ok(shop, "GET", f"/api/v1/inbox/{customer}")
        assert inbox["items"], inbox
        return str(inbox["items"][0]["id"])

    message = await eventually(delivered, within=30)
    coupon = await ok(
        shop,
        "POST",
        "/api/v1/coupons/templates",
        {"name": f"{MARK}-coupon", "kind": "no_threshold", "amount": "5", "valid_days": 30},
        201,
    )
    reward = await ok(
        shop,
        "POST",
        "/api/v1/loyalty/rewards",
        {"name": f"{MARK}-reward", "kind": "gift", "points_cost": 10},
        201,
    )
    await ok(
        shop,
        "POST",
        f"/api/v1/loyalty/members/{customer}/adjustments",
        {"points": 10, "reason": f"{MARK}-points"},
        201,
    )
    redemption = await ok(
        shop, "POST", f"/api/v1/loyalty/members/{customer}/redemptions", {"reward_id": reward["id"]}, 201
    )
    lottery = await ok(
        shop,
        "POST",
        "/api/v1/loyalty/lotteries",
        {
            "name": f"{MARK}-lottery",
            "cost_points": 1,
            "prizes": [{"name": f"{MARK}-prize", "probability": "0.5", "points": 1}],
        },
        201,
    )
    activity = await ok(
        shop,
        "POST",
        "/api/v1/activities",
        {
            "type": "survey",
            "title": f"{MARK}-survey",
            "starts_at": "2026-01-01T00:00:00+08:00",
            "ends_at": "2030-01-01T00:00:00+08:00",
            "status": "live",
            "questions": [{"id": "q", "text": f"{MARK}?", "options": ["a", "b"]}],
        },
        201,
    )
    feedback = await ok(
        shop,
        "POST",
        "/api/v1/feedback",
        {"kind": "complaint", "subject": f"{MARK}-ticket", "customer_id": customer},
        201,
    )
    subscription = await ok(
        shop,
        "POST",
        "/api/v1/subscriptions",
        {"url": "http://127.0.0.1:9/hooks", "events": ["order.paid"]},
        201,
    )
    key = await ok(shop, "POST", "/api/v1/keys", {"name": f"{MARK}-key", "scopes": ["read"]}, 201)
    csv = (
        "order_id,buyer_id,status,total_amount,placed_at\n"
        "TA-1,tenant-a-import,completed,10.00,2026-11-01T10:00:00+08:00\n"
    )
    imported = await shop.client.post(
        "/api/v1/imports", files={"file": (f"{MARK}.csv", csv.encode(), "text/csv")}, headers=shop.headers()
    )
    assert imported.status_code == 202, imported.text
    return {
        "customer_id": customer,
        "order_id": order,
        "tag": f"{MARK}-tag",
        "segment_id": segment["id"],
        "group_id": group["id"],
        "template_id": template["id"],
        "coupon_template_id": coupon["id"],
        "campaign_id": campaign["id"],
        "message_id": message,
        "reward_id": reward["id"],
        "redemption_id": redemption["id"],
        "lottery_id": lottery["id"],
        "activity_id": activity["id"],
        "feedback_id": feedback["id"],
        "subscription_id": subscription["id"],
        "key_id": key["id"],
        "import_id": imported.json()["import_id"],
    }


def value_for(path: str, name: str, objects: dict[str, str]) -> str | None:
    if name == "template_id" and path.startswith("/api/v1/coupons/"):
        return objects["coupon_template_id"]
    return OWN_VALUES.get(name) or objects.get(name)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def example_body(document: dict[str, Any], operation: dict[str, Any]) -> Any:
    """The operation's own example body, so B's request gets past validation to the object lookup."""
    for media in operation.get("requestBody", {}).get("content", {}).values():
        if "example" in media:
            return media["example"]
        for example in media.get("examples", {}).values():
            return example.get("value")
        schema = _resolve(document, media.get("schema", {}))
        if schema.get("examples"):
            return schema["examples"][0]
        if schema.get("properties") is not None and not schema.get("required"):
            return {}
    return None


def example_query(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    """Values for the required query parameters, from their examples."""
    query: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "query" or not parameter.get("required"):
            continue
        schema = _resolve(document, parameter.get("schema", {}))
        examples = parameter.get("examples") or {}
        value = next(iter(examples.values()), {}).get("value") if isinstance(examples, dict) else None
        value = value or (schema.get("examples") or [None])[0] or parameter.get("example")
        if value is not None:
            query[parameter["name"]] = value
    return query


async def test_shop_b_reaches_nothing_of_shop_a(
    shop: ShopClient, other_shop: ShopClient, gateway: httpx.AsyncClient
) -> None:
    objects = await shop_a_objects(shop)
    before = await ok(shop, "GET", f"/api/v1/loyalty/members/{objects['customer_id']}")
    document = (await gateway.get("/openapi.json")).json()
    forgotten: list[str] = []
    leaks: list[str] = []
    checked = 0
    for path, operations in document["paths"].items():
        if PUBLIC.match(path) or ADMIN.match(path):
            continue
        names = re.findall(r"{(\w+)}", path)
        for method, operation in operations.items():
            if not names and method != "get":
                continue  # creating or changing B's own things
            values = {n: value_for(path, n, objects) for n in names}
            missing = [n for n, v in values.items() if v is None]
            if missing:
                forgotten.append(f"{method.upper()} {path}: {missing}")
                continue
            url = path.format(**values)
            body = example_body(document, operation) if method in ("post", "put", "patch") else None
            response = await other_shop.client.request(
                method.upper(),
                url,
                json=body,
                params=example_query(document, operation),
                headers=other_shop.headers(),
            )
            checked += 1
            where = f"{method.upper()} {path} → {response.status_code}"
            names_a_object = bool(set(names) - set(OWN_VALUES))
            if response.status_code >= 500:
                leaks.append(f"{where}: server error {response.text[:200]}")
            elif names_a_object and response.status_code == 422:
                # Refused before the lookup: nothing proven. The operation needs an example body.
                leaks.append(
                    f"{where}: its example body was refused, isolation untested: {response.text[:200]}"
                )
            elif MARK in response.text or any(
                # An id B itself sent may come back ("order … not found"); any other id of A may not.
                v in response.text and v not in url
                for k, v in objects.items()
                if k not in OWN_VALUES and len(v) > 8
            ):
                leaks.append(f"{where}: shows shop A's data: {response.text[:200]}")
            elif (
                names_a_object
                and 200 <= response.status_code < 300
                # Acting on A's id in B's namespace may succeed only where it makes B's own record (a
                # sign-in, a consent, an inbox read): it never shows or touches A's.
                and not re.search(r"/(signin|consent)$|^/api/v1/inbox/", path)
            ):
                leaks.append(f"{where}: accepted B's key on shop A's object: {response.text[:200]}")
    assert forgotten == [], "operations naming objects this test cannot make: " + "; ".join(forgotten)
    assert leaks == [], "\n".join(leaks)
    assert checked > 60
    # A's things are as they were: B's calls changed nothing of A.
    after = await ok(shop, "GET", f"/api/v1/loyalty/members/{objects['customer_id']}")
    assert after == before
    assert (await ok(shop, "GET", f"/api/v1/segments/{objects['segment_id']}"))["name"] == f"{MARK}-segment"
    keys = (await ok(shop, "GET", "/api/v1/keys"))["items"]
    assert next(k for k in keys if k["id"] == objects["key_id"])["revoked_at"] is None
    campaign = await ok(shop, "GET", f"/api/v1/campaigns/{objects['campaign_id']}")
    assert campaign["status"] not in ("cancelled", "paused")
