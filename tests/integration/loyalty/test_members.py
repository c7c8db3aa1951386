"""Sign-in, adjustments, rewards and redemptions under concurrency, and expiry with an injected clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from laoke.contracts.loyalty import POINTS_EXPIRED, POINTS_EXPIRING
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.testing.infra import Infra, events_on, eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from services.loyalty.schedule import run_jobs
from tests.integration.loyalty.helpers import T0, invariants_hold, ledger, member, set_program

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def at_t0() -> Iterator[None]:
    clock.travel(T0)
    try:
        yield
    finally:
        clock.reset()


async def post(shop: ShopClient, path: str, body: object = None, **headers: str) -> Any:
    return await shop.client.post(path, json=body, headers={**shop.headers(), **headers})


async def give(shop: ShopClient, customer: str, points: int) -> None:
    response = await shop.client.post(
        f"/api/v1/loyalty/members/{customer}/adjustments",
        json={"points": points, "reason": "测试"},
        headers=shop.headers(),
    )
    assert response.status_code == 201, response.text


async def test_signin_once_per_shop_local_day_with_streaks(shop: ShopClient, at_t0: None) -> None:
    await set_program(shop, signin={"daily_points": 5, "streak_bonuses": [{"days": 2, "points": 20}]})
    late = datetime(2026, 3, 1, 23, 59, 59, tzinfo=SHANGHAI)
    clock.travel(late)
    first = (await post(shop, "/api/v1/loyalty/members/cus_sign/signin")).json()
    assert (first["signed_in"], first["points"], first["streak"], first["day"]) == (True, 5, 1, "2026-03-01")
    again = (await post(shop, "/api/v1/loyalty/members/cus_sign/signin")).json()
    assert (again["signed_in"], again["points"], again["points_available"]) == (False, 0, 5)

    clock.travel(late + timedelta(seconds=1))  # 00:00:00 shop-local: a new day, the streak goes on
    second = (await post(shop, "/api/v1/loyalty/members/cus_sign/signin")).json()
    assert (second["signed_in"], second["day"], second["streak"], second["bonus"]) == (
        True,
        "2026-03-02",
        2,
        20,
    )
    assert second["points_available"] == 30

    clock.travel(late + timedelta(days=2))  # a day skipped: the streak starts over
    third = (await post(shop, "/api/v1/loyalty/members/cus_sign/signin")).json()
    assert (third["streak"], third["bonus"]) == (1, 0)
    kinds = [e["kind"] for e in await ledger(shop, "cus_sign")]
    assert kinds == ["signin", "signin", "bonus", "signin"]
    too_long = await post(shop, f"/api/v1/loyalty/members/{'x' * 40}/signin")
    assert too_long.status_code == 422 and too_long.json()["error"] == "validation_error"


async def test_adjustments_are_checked_and_idempotent(
    shop: ShopClient, other_shop: ShopClient, stack: ServerSet
) -> None:
    path = "/api/v1/loyalty/members/cus_adj/adjustments"
    stranger = await post(shop, path, {"points": 10, "reason": "x"})
    assert stranger.status_code == 404  # not a member (no order, no sign-in)
    await post(shop, "/api/v1/loyalty/members/cus_adj/signin")
    for bad in ({"points": 0, "reason": "x"}, {"points": 10}, {"points": "ten", "reason": "x"}):
        refused = await post(shop, path, bad)
        assert refused.status_code == 422, (bad, refused.text)
    key = {"Idempotency-Key": "comp-7"}
    first = await post(shop, path, {"points": 100, "reason": "物流延误补偿"}, **key)
    retry = await post(shop, path, {"points": 100, "reason": "物流延误补偿"}, **key)
    assert first.status_code == retry.status_code == 201
    assert first.json() == retry.json() and first.json()["points_available"] == 105
    changed_body = await post(shop, path, {"points": 200, "reason": "物流延误补偿"}, **key)
    assert changed_body.status_code == 422  # same key, other request
    overdraw = await post(shop, path, {"points": -106, "reason": "扣回"})
    assert overdraw.status_code == 409 and overdraw.json()["error"] == "insufficient_points"
    assert (await post(other_shop, path, {"points": 5, "reason": "x"})).status_code == 404
    taken = await post(shop, path, {"points": -105, "reason": "扣回"})
    assert taken.json()["points_available"] == 0
    assert [e["kind"] for e in await ledger(shop, "cus_adj")] == ["signin", "adjust", "adjust"]
    await invariants_hold(stack, shop.shop_id)


async def test_rewards_and_their_refusals(shop: ShopClient, other_shop: ShopClient, stack: ServerSet) -> None:
    await post(shop, "/api/v1/loyalty/members/cus_rw/signin")
    await give(shop, "cus_rw", 995)  # 5 from sign-in: 1000
    gift = await post(
        shop,
        "/api/v1/loyalty/rewards",
        {"name": "定制茶杯", "kind": "gift", "points_cost": 400, "stock": 1, "per_member_limit": 2},
    )
    assert gift.status_code == 201, gift.text
    gift_id = gift.json()["id"]
    gold = await post(
        shop,
        "/api/v1/loyalty/rewards",
        {"name": "金卡专享", "kind": "gift", "points_cost": 10, "min_tier_level": 3},
    )
    redeem = "/api/v1/loyalty/members/cus_rw/redemptions"

    done = await post(shop, redeem, {"reward_id": gift_id}, **{"Idempotency-Key": "cup-1"})
    assert done.status_code == 201 and done.json()["points_available"] == 600, done.text
    replay = await post(shop, redeem, {"reward_id": gift_id}, **{"Idempotency-Key": "cup-1"})
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == done.json()["id"]

    sold_out = await post(shop, redeem, {"reward_id": gift_id})
    assert sold_out.status_code == 409 and sold_out.json()["error"] == "out_of_stock"
    low = await post(shop, redeem, {"reward_id": gold.json()["id"]})
    assert low.status_code == 422 and low.json()["error"] == "tier_too_low"
    unknown = await post(shop, redeem, {"reward_id": "rwd_nope"})
    assert unknown.status_code == 404 and "rwd_nope" in unknown.json()["detail"]
    stranger = await post(shop, "/api/v1/loyalty/members/cus_nobody/redemptions", {"reward_id": gift_id})
    assert stranger.status_code == 404 and "cus_nobody" in stranger.json()["detail"], stranger.text
    foreign = await post(other_shop, redeem, {"reward_id": gift_id})
    assert foreign.status_code == 404

    limited = await post(
        shop,
        "/api/v1/loyalty/rewards",
        {"name": "试饮装", "kind": "gift", "points_cost": 100, "per_member_limit": 1},
    )
    limited_id = limited.json()["id"]
    assert (await post(shop, redeem, {"reward_id": limited_id})).status_code == 201
    again = await post(shop, redeem, {"reward_id": limited_id})
    assert again.status_code == 409 and again.json()["error"] == "limit_reached"

    pricey = await post(
        shop, "/api/v1/loyalty/rewards", {"name": "茶具", "kind": "gift", "points_cost": 100000}
    )
    poor = await post(shop, redeem, {"reward_id": pricey.json()["id"]})
    assert poor.status_code == 409 and poor.json()["error"] == "insufficient_points"
    assert (await member(shop, "cus_rw"))["points_available"] == 500
    await invariants_hold(stack, shop.shop_id)


async def test_gifts_wait_to_be_sent_and_a_cancelled_one_gives_points_and_stock_back(
    shop: ShopClient, other_shop: ShopClient, stack: ServerSet
) -> None:
    await post(shop, "/api/v1/loyalty/members/cus_gift/signin")
    await give(shop, "cus_gift", 995)  # 1000 points
    cup = await post(
        shop,
        "/api/v1/loyalty/rewards",
        {"name": "紫砂茶杯", "kind": "gift", "points_cost": 300, "stock": 2, "per_member_limit": 1},
    )
    cup_id = cup.json()["id"]
    template = await post(
        shop, "/api/v1/coupons/templates", {"name": "5元券", "kind": "no_threshold", "amount": "5"}
    )
    coupon = await post(
        shop,
        "/api/v1/loyalty/rewards",
        {"name": "5元券", "kind": "coupon", "points_cost": 50, "coupon_template_id": template.json()["id"]},
    )
    redeem = "/api/v1/loyalty/members/cus_gift/redemptions"
    sent_cup = await post(shop, redeem, {"reward_id": cup_id})
    assert (sent_cup.status_code, sent_cup.json()["status"]) == (201, "pending"), sent_cup.text
    as_coupon = await post(shop, redeem, {"reward_id": coupon.json()["id"]})
    assert as_coupon.json()["status"] == "fulfilled" and as_coupon.json()["coupon_code"]

    listing = "/api/v1/loyalty/redemptions"
    waiting = (await shop.client.get(listing, params={"status": "pending"}, headers=shop.headers())).json()
    assert [(r["id"], r["reward_name"], r["customer_id"], r["points"]) for r in waiting["items"]] == [
        (sent_cup.json()["id"], "紫砂茶杯", "cus_gift", 300)
    ]
    everything = (await shop.client.get(listing, params={"limit": 1}, headers=shop.headers())).json()
    older = (
        await shop.client.get(
            listing, params={"limit": 1, "cursor": everything["next_cursor"]}, headers=shop.headers()
        )
    ).json()
    assert [r["id"] for r in everything["items"] + older["items"]] == [
        as_coupon.json()["id"],
        sent_cup.json()["id"],
    ]
    assert older["next_cursor"] is None

    # Called off: the 300 points come back, the cup goes back in stock, the limit no longer counts it.
    path = f"{listing}/{sent_cup.json()['id']}"
    cancelled = await shop.client.patch(
        path, json={"status": "cancelled", "note": "缺货"}, headers=shop.headers()
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["note"]) == ("cancelled", "缺货")
    again = await shop.client.patch(path, json={"status": "cancelled"}, headers=shop.headers())
    assert again.status_code == 200  # a retry changes nothing
    assert (await member(shop, "cus_gift"))["points_available"] == 1000 - 50
    stock = (await shop.client.get(f"/api/v1/loyalty/rewards/{cup_id}", headers=shop.headers())).json()
    assert (stock["stock"], stock["redeemed_count"]) == (2, 0)
    entries = [(e["kind"], e["points"]) for e in await ledger(shop, "cus_gift")]
    assert entries.count(("adjust", 300)) == 1

    second = await post(shop, redeem, {"reward_id": cup_id})
    assert second.status_code == 201, second.text  # the per-member limit of 1 is free again
    sent = await shop.client.patch(
        f"{listing}/{second.json()['id']}",
        json={"status": "fulfilled", "note": "顺丰 SF1234567890"},
        headers=shop.headers(),
    )
    assert (sent.json()["status"], sent.json()["note"]) == ("fulfilled", "顺丰 SF1234567890")
    late = await shop.client.patch(
        f"{listing}/{second.json()['id']}", json={"status": "cancelled"}, headers=shop.headers()
    )
    assert late.status_code == 409 and late.json()["error"] == "not_pending"
    coupon_path = f"{listing}/{as_coupon.json()['id']}"
    handed_over = await shop.client.patch(coupon_path, json={"status": "cancelled"}, headers=shop.headers())
    assert handed_over.status_code == 409 and handed_over.json()["error"] == "not_pending"
    for bad in ({"status": "pending"}, {"status": "lost"}, {"status": "fulfilled", "note": "x" * 201}):
        refused = await shop.client.patch(path, json=bad, headers=shop.headers())
        assert refused.status_code == 422, (bad, refused.text)
    foreign = await other_shop.client.patch(
        coupon_path, json={"status": "cancelled"}, headers=other_shop.headers()
    )
    assert foreign.status_code == 404
    unknown = await shop.client.patch(
        f"{listing}/rdm_0000000000000000", json={"status": "fulfilled"}, headers=shop.headers()
    )
    assert unknown.status_code == 404
    assert (
        await shop.client.get(listing, params={"cursor": "nope"}, headers=shop.headers())
    ).status_code == 400
    await invariants_hold(stack, shop.shop_id)


async def test_200_concurrent_redemptions_against_a_balance_for_50(
    shop: ShopClient, stack: ServerSet
) -> None:
    await post(shop, "/api/v1/loyalty/members/cus_rush/signin")
    await give(shop, "cus_rush", 495)  # 500 points: fifty redemptions of 10
    reward = await post(
        shop, "/api/v1/loyalty/rewards", {"name": "贴纸", "kind": "gift", "points_cost": 10, "stock": 120}
    )
    reward_id = reward.json()["id"]
    answers = await asyncio.gather(
        *(
            post(shop, "/api/v1/loyalty/members/cus_rush/redemptions", {"reward_id": reward_id})
            for _ in range(200)
        )
    )
    outcomes = Counter((a.status_code, a.json().get("error")) for a in answers)
    assert outcomes == {(201, None): 50, (409, "insufficient_points"): 150}, outcomes
    assert (await member(shop, "cus_rush"))["points_available"] == 0
    left = await shop.client.get(f"/api/v1/loyalty/rewards/{reward_id}", headers=shop.headers())
    assert (left.json()["stock"], left.json()["redeemed_count"]) == (70, 50)
    await invariants_hold(stack, shop.shop_id)


async def test_expiry_takes_only_what_a_redemption_left(
    shop: ShopClient, stack: ServerSet, infra: Infra, at_t0: None
) -> None:
    await set_program(shop, expiry={"mode": "rolling", "days": 30, "notice_days": 7})
    await post(shop, "/api/v1/loyalty/members/cus_exp/signin")  # 5 points, expiring T0 + 30 days
    await give(shop, "cus_exp", 95)  # lot A: 95 points, same expiry
    clock.travel(T0 + timedelta(days=10))
    await give(shop, "cus_exp", 50)  # lot B: expires T0 + 40 days
    clock.travel(T0 + timedelta(days=15))
    reward = await post(shop, "/api/v1/loyalty/rewards", {"name": "茶叶", "kind": "gift", "points_cost": 120})
    spent = await post(
        shop, "/api/v1/loyalty/members/cus_exp/redemptions", {"reward_id": reward.json()["id"]}
    )
    assert spent.status_code == 201  # takes 100 of A's lots and 20 of B
    loyalty = stack["loyalty"].app.state

    clock.travel(T0 + timedelta(days=25))
    body = await member(shop, "cus_exp")
    assert body["expiring_soon"] is None  # the lots due on day 30 are spent; B (day 40) is beyond 7 days
    clock.travel(T0 + timedelta(days=31))
    await run_jobs(loyalty.db, loyalty.outbox)
    assert (await member(shop, "cus_exp"))["points_available"] == 30, "nothing left in the lots due on day 30"
    clock.travel(T0 + timedelta(days=34))  # six days before lot B expires: inside the notice window
    assert (await member(shop, "cus_exp"))["expiring_soon"]["points"] == 30
    await run_jobs(loyalty.db, loyalty.outbox)
    [notice] = await events_on(
        infra.bootstrap_servers, Topic.LOYALTY, shop.shop_id, 1, types=frozenset({POINTS_EXPIRING})
    )
    assert (notice.payload["customer_id"], notice.payload["points"]) == ("cus_exp", 30)

    clock.travel(T0 + timedelta(days=41))
    await run_jobs(loyalty.db, loyalty.outbox)
    body = await member(shop, "cus_exp")
    assert body["points_available"] == 0
    last = (await ledger(shop, "cus_exp"))[-1]
    assert (last["kind"], last["points"]) == ("expire", -30)
    [expired] = await events_on(
        infra.bootstrap_servers, Topic.LOYALTY, shop.shop_id, 1, types=frozenset({POINTS_EXPIRED})
    )
    assert (expired.payload["members"], expired.payload["points"]) == (1, 30)

    async def profile_follows() -> None:  # segmentation read the run's balances feed
        profile = await shop.client.get("/api/v1/customers/cus_exp", headers=shop.headers())
        assert profile.status_code == 200 and profile.json()["points_balance"] == 0, profile.text

    await eventually(profile_follows, within=20)
    await invariants_hold(stack, shop.shop_id)


async def test_liability_sums_outstanding_and_expiring_points(
    shop: ShopClient, other_shop: ShopClient
) -> None:
    await set_program(shop, expiry={"mode": "rolling", "days": 45}, signin={"daily_points": 5})
    for customer in ("cus_l1", "cus_l2"):
        assert (
            await shop.client.post(f"/api/v1/loyalty/members/{customer}/signin", headers=shop.headers())
        ).status_code == 200
    owed = (await shop.client.get("/api/v1/loyalty/liability", headers=shop.headers())).json()
    # Sign-in points expire in 45 days: not within 30, within 60 and 90.
    assert owed == {
        "members": 2,
        "points_outstanding": 10,
        "points_pending": 0,
        "expiring": {"30": 0, "60": 10, "90": 10},
    }
    theirs = (await other_shop.client.get("/api/v1/loyalty/liability", headers=other_shop.headers())).json()
    assert theirs["members"] == 0 and theirs["points_outstanding"] == 0
