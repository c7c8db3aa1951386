"""Outbound webhooks to a real HTTP receiver: signed deliveries, retries with backoff, a delivery log,
and a subscription disabled after repeated failure."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from laoke.kit import clock
from laoke.testing.infra import eventually, free_port
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import RunningServer, serve
from tests.integration.messaging.helpers import buyer, call, ok


class Receiver:
    """A third-party app: keeps every delivery; answers 500 while `failing` > 0."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failing = 0
        self.app = FastAPI()

        @self.app.post("/hooks")
        async def hooks(request: Request) -> Response:
            body = (await request.body()).decode()
            self.received.append({"headers": dict(request.headers), "body": body})
            if self.failing > 0:
                self.failing -= 1
                return Response(status_code=500)
            return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, RunningServer]]:
    app = Receiver()
    server = await serve(app.app, "receiver", None)
    try:
        yield app, server
    finally:
        await server.stop()
        clock.reset()


def _verified(secret: str, delivery: dict[str, Any]) -> dict[str, Any]:
    stamp, _, digest = delivery["headers"]["x-laoke-signature"].partition(",v1=")
    expected = hmac.new(
        secret.encode(), f"{stamp[2:]}.{delivery['body']}".encode(), hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(digest, expected)
    return dict(json.loads(delivery["body"]))


async def test_subscribed_events_are_delivered_signed_and_retried(
    shop: ShopClient, receiver: tuple[Receiver, RunningServer]
) -> None:
    app, server = receiver
    created = await ok(
        shop, "POST", "/api/v1/subscriptions", {"url": f"{server.url}/hooks", "events": ["order.paid"]}, 201
    )
    app.failing = 1  # the first attempt fails: retried 10 s later
    customer = await buyer(shop, "wh-1", status="paid", paid_at="2026-11-01T10:05:00+08:00")
    await buyer(shop, "wh-2", status="created", order_id="O-unpaid")  # not subscribed to order.created

    async def failed_once() -> None:
        log = (await ok(shop, "GET", f"/api/v1/subscriptions/{created['id']}/deliveries"))["items"]
        assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("pending", 1, 500)]

    await eventually(failed_once, within=20)
    clock.travel(clock.now() + timedelta(seconds=11))

    async def delivered() -> None:
        log = (await ok(shop, "GET", f"/api/v1/subscriptions/{created['id']}/deliveries"))["items"]
        assert [(d["status"], d["attempts"]) for d in log] == [("delivered", 2)]

    await eventually(delivered, within=20)
    assert len(app.received) == 2 and app.received[0]["body"] == app.received[1]["body"]
    event = _verified(created["secret"], app.received[1])
    assert event["type"] == "order.paid" and event["payload"]["customer_id"] == customer
    assert app.received[1]["headers"]["x-laoke-event-id"] == event["event_id"]
    listed = (await ok(shop, "GET", "/api/v1/subscriptions"))["items"]
    assert "secret" not in listed[0] and listed[0]["active"]


async def test_a_dead_endpoint_disables_the_subscription(shop: ShopClient, other_shop: ShopClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    created = await ok(shop, "POST", "/api/v1/subscriptions", {"url": dead, "events": ["*"]}, 201)
    for i in range(5):  # the test stack disables after 5 failures in a row
        await buyer(shop, f"dead-{i}")

    async def disabled() -> None:
        listed = (await ok(shop, "GET", "/api/v1/subscriptions"))["items"]
        assert not listed[0]["active"] and "5 deliveries failed in a row" in listed[0]["disabled_reason"]

    await eventually(disabled, within=30)
    assert (
        await call(other_shop, "GET", f"/api/v1/subscriptions/{created['id']}/deliveries")
    ).status_code == 404
    bad = await call(
        shop, "POST", "/api/v1/subscriptions", {"url": "ftp://x.example", "events": ["order.paid"]}
    )
    assert bad.status_code == 422
    unknown = await call(shop, "POST", "/api/v1/subscriptions", {"url": dead, "events": ["order.eaten"]})
    assert unknown.status_code == 422 and "order.eaten" in unknown.json()["detail"]
    assert (await call(shop, "DELETE", f"/api/v1/subscriptions/{created['id']}")).status_code == 204
    assert (await ok(shop, "GET", "/api/v1/subscriptions"))["items"] == []
