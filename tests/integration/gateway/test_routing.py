"""Routing, limits and failure mapping at the gateway."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.proxy import match_route
from laoke.kit.internal_auth import sign
from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet, extra_gateway
from tests.integration.gateway.test_auth import assert_error

ORDER = order_json("R-1", buyer="b-1", status="paid", total="10.00")


async def test_unknown_route_is_404_json(shop: ShopClient) -> None:
    assert_error(await shop.client.get("/api/v1/nothing-here", headers=shop.headers()), 404, "not_found")
    assert_error(await shop.client.get("/not-api", headers=shop.headers()), 404, "not_found")


async def test_odd_paths_reach_the_service_as_sent(shop: ShopClient) -> None:
    """Forwarded still percent-encoded, on the service's own host: an encoded slash, a space, a path that
    looks like another host are the service's 404 to give, a NUL its 422 (PostgreSQL refuses it in
    text), never a 500 or a request to somewhere else."""
    answers = {
        "/api/v1/orders/a%2Fb": (404, "not_found"),
        "/api/v1/orders/a%20b": (404, "not_found"),
        "/api/v1/orders//evil.example/x": (404, "not_found"),
        "/api/v1/orders/a%00b": (422, "validation_error"),
    }
    for path, (status, code) in answers.items():
        response = await shop.client.get(path, headers=shop.headers())
        assert_error(response, status, code)
        assert response.headers["server-timing"].startswith("upstream;dur=")  # answered by ingest


async def test_oversized_body_is_413(shop: ShopClient) -> None:
    big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    response = await shop.client.post(
        "/api/v1/orders", content=big, headers={**shop.headers(), "Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_malformed_json_is_400_and_wrong_types_are_422(shop: ShopClient) -> None:
    malformed = await shop.client.post(
        "/api/v1/orders",
        content=b'{"order_id": ',
        headers={**shop.headers(), "Content-Type": "application/json"},
    )
    assert_error(malformed, 400, "malformed_json")
    wrong = await shop.client.post(
        "/api/v1/orders",
        json={**ORDER, "total_amount": "a lot", "status": "teleported"},
        headers=shop.headers(),
    )
    assert_error(wrong, 422, "validation_error")
    assert "total_amount" in wrong.json()["detail"] and "status" in wrong.json()["detail"]


async def test_request_id_is_returned_and_carried_into_events(shop: ShopClient, stack: ServerSet) -> None:
    response = await shop.client.post(
        "/api/v1/orders",
        json={**ORDER, "order_id": "RID-1"},
        headers={**shop.headers(), "X-Request-Id": "req-abc-123"},
    )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "req-abc-123"
    generated = await shop.client.get("/api/v1/me", headers=shop.headers())
    assert len(generated.headers["x-request-id"]) == 32

    correlation = await stack.scalar(
        "ingest",
        "SELECT envelope->>'correlation_id' FROM ingest.outbox WHERE shop_id = :shop",
        shop=shop.shop_id,
    )
    assert correlation == "req-abc-123"


async def test_forwarded_answers_say_how_long_the_service_took(shop: ShopClient) -> None:
    """`Server-Timing: upstream;dur=<ms>` on what the gateway forwarded, none on its own answers: what
    a client waits beyond it is the gateway's cost (bench/gateway_overhead.py measures it so)."""
    created = await shop.client.post(
        "/api/v1/orders", json={**ORDER, "order_id": "ST-1"}, headers=shop.headers()
    )
    assert created.status_code == 201
    name, _, duration = created.headers["server-timing"].partition(";dur=")
    assert name == "upstream" and 0 < float(duration) < 30_000
    listed = await shop.client.get("/api/v1/orders", headers=shop.headers())  # streamed or buffered alike
    assert listed.headers["server-timing"].startswith("upstream;dur=")
    own = await shop.client.get("/api/v1/me", headers=shop.headers())
    assert "server-timing" not in own.headers


async def test_correlation_id_flows_from_request_through_consumers(
    shop: ShopClient, stack: ServerSet
) -> None:
    completed = {**ORDER, "order_id": "RID-2", "status": "completed"}
    headers = {**shop.headers(), "X-Request-Id": "req-chain-42"}
    assert (await shop.client.post("/api/v1/orders", json=completed, headers=headers)).status_code == 201
    engine = create_async_engine(stack["loyalty"].settings.database_url)

    async def loyalty_event_carries_it() -> None:
        async with engine.connect() as conn:
            correlation = await conn.scalar(
                text(
                    "SELECT envelope->>'correlation_id' FROM loyalty.outbox "
                    "WHERE shop_id = :shop AND event_type = 'loyalty.points_changed'"
                ),
                {"shop": shop.shop_id},
            )
        assert correlation == "req-chain-42"

    try:
        await eventually(loyalty_event_carries_it)
    finally:
        await engine.dispose()


async def test_rate_limit_answers_429_with_retry_after(stack: ServerSet, shop: ShopClient) -> None:
    async with (
        extra_gateway(stack, rate_limit_per_second=0.5, rate_limit_burst=2) as limited,
        httpx.AsyncClient(base_url=limited.url) as client,
    ):
        statuses = [
            (await client.get("/api/v1/orders/ord_missing", headers=shop.headers())).status_code
            for _ in range(3)
        ]
        assert statuses == [404, 404, 429]
        limited_response = await client.get("/api/v1/orders/ord_missing", headers=shop.headers())
        assert_error(limited_response, 429, "rate_limited")
        assert int(limited_response.headers["retry-after"]) >= 1
        # The gateway's own keyed endpoints share the key's bucket.
        assert_error(await client.get("/api/v1/me", headers=shop.headers()), 429, "rate_limited")


async def test_service_down_is_503_for_its_routes_only(stack: ServerSet, shop: ShopClient) -> None:
    async with (
        extra_gateway(stack, loyalty_url="http://127.0.0.1:9") as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        down = await client.get("/api/v1/loyalty/members/cus_x", headers=shop.headers())
        assert_error(down, 503, "service_unavailable")
        assert "loyalty" in down.json()["detail"]
        up = await client.get("/api/v1/orders/ord_missing", headers=shop.headers())
        assert_error(up, 404, "not_found")


async def test_services_refuse_calls_that_bypass_the_gateway(stack: ServerSet) -> None:
    ingest = stack["ingest"].url
    async with httpx.AsyncClient(base_url=ingest) as client:
        unsigned = await client.get("/api/v1/orders/ord_x", headers={"x-laoke-shop-id": "shp_any"})
        assert_error(unsigned, 401, "internal_auth_required")
        forged = sign("not-the-secret", method="GET", path="/api/v1/orders/ord_x", shop_id="shp_any")
        assert_error(await client.get("/api/v1/orders/ord_x", headers=forged), 401, "internal_auth_required")
        good = sign(
            stack["ingest"].settings.internal_secret, method="GET", path="/api/v1/orders/ord_x", shop_id="s"
        )
        # A valid signature for one shop cannot be replayed for another.
        tampered = {**good, "x-laoke-shop-id": "shp_victim"}
        assert_error(
            await client.get("/api/v1/orders/ord_x", headers=tampered), 401, "internal_auth_required"
        )
        assert (await client.get("/api/v1/orders/ord_x", headers=good)).status_code == 404
        # Probes stay open for the orchestrator.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).json()["checks"] == {"database": "ok", "broker": "ok"}
        loyalty_ready = (await httpx.AsyncClient().get(f"{stack['loyalty'].url}/readyz")).json()
        assert loyalty_ready["checks"]["consumer:loyalty"] == "ok"
        assert "laoke_http_requests_total" in (await client.get("/metrics")).text


async def test_merged_openapi_lists_every_service(gateway: httpx.AsyncClient) -> None:
    doc = (await gateway.get("/openapi.json")).json()
    for path in (
        "/api/v1/orders",
        "/api/v1/orders/{order_id}",
        "/api/v1/loyalty/members/{customer_id}",
        "/api/v1/customers/{customer_id}",
        "/api/v1/keys",
        "/api/v1/customers/lookup",
        "/api/v1/me",
        "/api/v1/admin/shops",
    ):
        assert path in doc["paths"], path
    assert "x-laoke-unavailable" not in doc
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "OrderIn" in doc["components"]["schemas"]
    assert (await gateway.get("/docs")).status_code == 200


async def test_every_documented_path_is_routed_and_every_body_has_an_example(
    gateway: httpx.AsyncClient,
) -> None:
    """A new endpoint cannot be forgotten in the gateway's routing table or left without an example."""
    doc = (await gateway.get("/openapi.json")).json()
    served_by_gateway = ("/api/v1/keys", "/api/v1/me", "/api/v1/admin", "/api/v1/webhook-secret")
    unrouted, missing_examples = [], []
    checked = 0
    for path, operations in doc["paths"].items():
        concrete = path.replace("{", "").replace("}", "")
        if not path.startswith(served_by_gateway) and match_route(concrete) is None:
            unrouted.append(path)
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            ref = body.get("schema", {}).get("$ref", "")
            schema = (
                doc["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
                if ref
                else body.get("schema", {})
            )
            checked += 1
            if not (schema.get("examples") or body.get("examples") or body.get("example")):
                missing_examples.append(f"{method.upper()} {path}")
    assert checked > 25, "the document's request bodies were not found"
    assert unrouted == [], unrouted
    assert missing_examples == [], missing_examples


async def _raw_request(base_url: str, request_line: bytes, api_key: str) -> tuple[int, bytes]:
    """Send `request_line` as typed (no client library to percent-encode it); the status and body."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        request_line
        + b"\r\nHost: x\r\nAuthorization: Bearer "
        + api_key.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_a_url_typed_with_raw_utf8_is_read_as_its_text(shop: ShopClient, stack: ServerSet) -> None:
    """curl sends `?external_id=张三` as raw UTF-8 bytes, which HTTP/1.1 does not allow in a URL: the
    servers read it as if it had been percent-encoded. What stays invalid (a space in the URL) is a
    400 in the API's own JSON shape, from the gateway and from a service alike."""
    created = await shop.client.post(
        "/api/v1/orders", json=order_json("UTF-1", buyer="张三"), headers=shop.headers()
    )
    assert created.status_code == 201, created.text
    customer_id = created.json()["order"]["customer_id"]

    status, body = await _raw_request(
        stack.gateway_url,
        "GET /api/v1/customers/lookup?channel=api&external_id=张三 HTTP/1.1".encode(),
        shop.api_key,
    )
    assert status == 200, body
    assert json.loads(body) == {"customer_id": customer_id, "channel": "api", "external_id": "张三"}

    for base_url in (stack.gateway_url, stack["ingest"].url):
        status, body = await _raw_request(
            base_url, b"GET /api/v1/customers/lookup?external_id=a b HTTP/1.1", shop.api_key
        )
        assert status == 400
        error = json.loads(body)
        assert error["error"] == "bad_request"
        assert "percent-encoded" in error["detail"]
