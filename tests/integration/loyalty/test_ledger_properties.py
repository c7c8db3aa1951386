"""Property-based test of the ledger (hypothesis state machine): whatever sequence of earning, spending,
redeeming, signing in and time passing (with expiry), the balance equals the sum of the ledger and of
the lots, never goes negative, and every refusal is exactly "not enough points".

The machine runs in a worker thread with its own event loop and HTTP client, talking to the real
stack through the gateway; the stack keeps serving on the test's loop meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from laoke.kit import clock
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from services.loyalty.schedule import run_jobs
from tests.integration.loyalty.helpers import T0, invariants_hold, set_program

COST = 40


class World:
    """What the machine needs from the test: where to call, and the loop the stack runs on."""

    shop: ShopClient
    stack: ServerSet
    main: asyncio.AbstractEventLoop
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    reward_id: str


WORLD = World()


def on_thread(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return WORLD.loop.run_until_complete(coroutine)


def on_stack(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coroutine, WORLD.main).result(timeout=60)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.customer = f"cus_prop_{uuid.uuid4().hex[:12]}"
        self.days = 0
        clock.travel(T0)
        self.balance = self._call("POST", f"/api/v1/loyalty/members/{self.customer}/signin").json()[
            "points_available"
        ]

    def _call(self, method: str, path: str, body: object = None) -> httpx.Response:
        return on_thread(WORLD.client.request(method, path, json=body, headers=WORLD.shop.headers()))

    def _adjust(self, points: int) -> httpx.Response:
        return self._call(
            "POST",
            f"/api/v1/loyalty/members/{self.customer}/adjustments",
            {"points": points, "reason": "prop"},
        )

    @rule(points=st.integers(min_value=1, max_value=300))
    def earn(self, points: int) -> None:
        response = self._adjust(points)
        assert response.status_code == 201, response.text
        assert response.json()["points_available"] == self.balance + points
        self.balance += points

    @rule(points=st.integers(min_value=1, max_value=300))
    def spend(self, points: int) -> None:
        response = self._adjust(-points)
        if points > self.balance:
            assert response.status_code == 409 and response.json()["error"] == "insufficient_points"
        else:
            assert response.status_code == 201, response.text
            self.balance -= points
            assert response.json()["points_available"] == self.balance

    @rule()
    def redeem(self) -> None:
        response = self._call(
            "POST", f"/api/v1/loyalty/members/{self.customer}/redemptions", {"reward_id": WORLD.reward_id}
        )
        if self.balance < COST:
            assert response.status_code == 409 and response.json()["error"] == "insufficient_points"
        else:
            assert response.status_code == 201, response.text
            self.balance -= COST

    @rule()
    def sign_in(self) -> None:
        response = self._call("POST", f"/api/v1/loyalty/members/{self.customer}/signin")
        assert response.status_code == 200, response.text
        self.balance = response.json()["points_available"]

    @rule(days=st.integers(min_value=1, max_value=15))
    def time_passes(self, days: int) -> None:
        self.days += days
        clock.travel(T0 + timedelta(days=self.days))
        on_stack(run_jobs(WORLD.stack["loyalty"].app.state.db, WORLD.stack["loyalty"].app.state.outbox))
        now = self._call("GET", f"/api/v1/loyalty/members/{self.customer}").json()["points_available"]
        assert now <= self.balance, "time only ever takes points away"
        self.balance = now

    @invariant()
    def ledger_is_consistent(self) -> None:
        on_thread(invariants_hold(WORLD.stack, WORLD.shop.shop_id))


async def test_ledger_invariants_hold_for_any_sequence(shop: ShopClient, stack: ServerSet) -> None:
    await set_program(shop, expiry={"mode": "rolling", "days": 20}, signin={"daily_points": 5})
    reward = await shop.client.post(
        "/api/v1/loyalty/rewards",
        json={"name": "小样", "kind": "gift", "points_cost": COST},
        headers=shop.headers(),
    )
    WORLD.shop, WORLD.stack, WORLD.main, WORLD.reward_id = (
        shop,
        stack,
        asyncio.get_running_loop(),
        reward.json()["id"],
    )

    def run() -> None:
        WORLD.loop = asyncio.new_event_loop()
        WORLD.client = httpx.AsyncClient(base_url=stack.gateway_url, timeout=30)
        try:
            run_state_machine_as_test(
                LedgerMachine,
                settings=settings(
                    max_examples=12,
                    stateful_step_count=12,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        finally:
            WORLD.loop.run_until_complete(WORLD.client.aclose())
            WORLD.loop.close()

    try:
        await asyncio.to_thread(run)
    finally:
        clock.reset()
