"""`Idempotency-Key` on POST /api/v1/orders behaves as Stripe's does."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.testing.factories import order_json
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet

BODY = order_json("IDEM-1", buyer="buyer-idem", total="42.00")


async def test_a_retry_with_the_same_key_gets_the_first_answer(shop: ShopClient) -> None:
    headers = {**shop.headers(), "Idempotency-Key": "retry-1"}
    first = await shop.client.post("/api/v1/orders", json=BODY, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    retry = await shop.client.post("/api/v1/orders", json=BODY, headers=headers)
    # Without the key a repeat says "unchanged" with 200; with it, the client sees its first answer.
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()


async def test_the_same_key_with_another_body_is_refused(shop: ShopClient) -> None:
    headers = {**shop.headers(), "Idempotency-Key": "retry-2"}
    assert (await shop.client.post("/api/v1/orders", json=BODY, headers=headers)).status_code == 201
    other = {**BODY, "total_amount": "43.00"}
    response = await shop.client.post("/api/v1/orders", json=other, headers=headers)
    assert response.status_code == 422
    assert "different request body" in response.json()["detail"]


async def test_keys_belong_to_one_shop(shop: ShopClient, other_shop: ShopClient) -> None:
    assert (
        await shop.client.post(
            "/api/v1/orders", json=BODY, headers={**shop.headers(), "Idempotency-Key": "k"}
        )
    ).status_code == 201
    theirs = await other_shop.client.post(
        "/api/v1/orders",
        json={**BODY, "total_amount": "1.00"},
        headers={**other_shop.headers(), "Idempotency-Key": "k"},
    )
    assert theirs.status_code == 201 and theirs.json()["order"]["total_amount"] == "1.00"


async def test_concurrent_requests_with_one_key_run_once(shop: ShopClient) -> None:
    headers = {**shop.headers(), "Idempotency-Key": "race-1"}
    bodies = [order_json("IDEM-RACE", buyer="buyer-race", total="10.00")] * 8
    answers = await asyncio.gather(
        *(shop.client.post("/api/v1/orders", json=body, headers=headers) for body in bodies)
    )
    codes = sorted(a.status_code for a in answers)
    # Exactly one ran; the others either saw it running (409) or got its stored answer (201, replayed).
    assert set(codes) <= {201, 409}
    ran = [a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers]
    assert len(ran) == 1
    for conflict in (a for a in answers if a.status_code == 409):
        assert conflict.json()["error"] == "conflict"


async def test_a_retry_while_the_first_is_running_gets_409(shop: ShopClient, stack: ServerSet) -> None:
    # Hold the key's lock the way an in-flight first request does, then retry.
    engine = create_async_engine(stack["ingest"].settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"ingest.idempotency_keys\x1f{shop.shop_id}\x1fslow-1"},
            )
            response = await shop.client.post(
                "/api/v1/orders", json=BODY, headers={**shop.headers(), "Idempotency-Key": "slow-1"}
            )
            assert response.status_code == 409
            assert "still being processed" in response.json()["detail"]
        after = await shop.client.post(
            "/api/v1/orders", json=BODY, headers={**shop.headers(), "Idempotency-Key": "slow-1"}
        )
        assert after.status_code == 201
    finally:
        await engine.dispose()
