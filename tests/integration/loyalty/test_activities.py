"""Engagement activities through the gateway: surveys feeding segment rules, votes, grabs under 1,000
concurrent claims, price guesses, tasks completed by behaviour and profile events, task chains and
referrals — each reward in the points ledger exactly once — and the results endpoint."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from laoke.contracts.loyalty import ACTIVITY_PARTICIPATED, ACTIVITY_REWARDED
from laoke.contracts.topics import Topic
from laoke.testing.infra import Infra, events_on, eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet, extra_gateway
from tests.integration.loyalty.helpers import invariants_hold, ledger, member, member_reaches, set_program
from tests.integration.messaging.helpers import buyer, call, ok

SHANGHAI = ZoneInfo("Asia/Shanghai")


def window(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "status": "live",
        **overrides,
    }


async def activity(shop: ShopClient, **body: Any) -> dict[str, Any]:
    return dict(await ok(shop, "POST", "/api/v1/activities", {**window(), **body}, status=201))


async def take_part(shop: ShopClient, activity_id: str, **body: Any) -> httpx.Response:
    return await call(shop, "POST", f"/api/v1/activities/{activity_id}/participations", body)


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json()["error"]) == (status, code), response.text


async def stats(shop: ShopClient, activity_id: str) -> dict[str, Any]:
    return dict(await ok(shop, "GET", f"/api/v1/activities/{activity_id}/stats"))


async def event_behaviour(shop: ShopClient, external_id: str, kind: str, item_id: str | None = None) -> str:
    event = {"type": kind, "channel": "taobao", "buyer": {"external_id": external_id}}
    event |= {"occurred_at": datetime.now(UTC).isoformat(), **({"item_id": item_id} if item_id else {})}
    accepted = await ok(shop, "POST", "/api/v1/events", {"events": [event]}, status=202)
    return str(accepted["customer_ids"][0])


SURVEY = {
    "type": "survey",
    "title": "护肤小调查",
    "reward_points": 20,
    "budget_points": 40,
    "questions": [
        {"id": "skin_type", "text": "您的肤质？", "options": ["dry", "oily", "mixed"]},
        {"id": "wishes", "text": "想要的新品", "kind": "multiple", "options": ["面霜", "精华", "面膜"]},
        {"id": "advice", "text": "给我们的建议", "kind": "text", "required": False},
    ],
}


async def test_survey_answers_pay_once_and_become_segment_rules(
    shop: ShopClient, other_shop: ShopClient, stack: ServerSet, infra: Infra
) -> None:
    survey = await activity(shop, **SURVEY)
    sid = survey["id"]
    # Another shop's key sees none of it.
    for method, path, body in (
        ("GET", f"/api/v1/activities/{sid}", None),
        ("PATCH", f"/api/v1/activities/{sid}", {"status": "ended"}),
        ("GET", f"/api/v1/activities/{sid}/stats", None),
        ("GET", f"/api/v1/activities/{sid}/participations", None),
        ("POST", f"/api/v1/activities/{sid}/participations", {"customer_id": "cus_s1", "answers": {}}),
        ("POST", f"/api/v1/activities/{sid}/invitations", {"customer_id": "cus_s1"}),
    ):
        refused(await call(other_shop, method, path, body), 404, "not_found")
    assert (await ok(other_shop, "GET", "/api/v1/activities"))["items"] == []
    for answers, problem in (
        ({"skin_type": "dry", "wishes": ["面霜"], "colour": "red"}, "unknown question"),
        ({"skin_type": "wet", "wishes": ["面霜"]}, "no option 'wet'"),
        ({"skin_type": ["dry"], "wishes": ["面霜"]}, "takes one answer"),
        ({"wishes": ["面霜"]}, "needs an answer"),
        ({"skin_type": "dry", "wishes": ["面霜", "面霜"]}, "chosen twice"),
    ):
        bad = await take_part(shop, sid, customer_id="cus_s1", answers=answers)
        refused(bad, 422, "invalid_answer")
        assert problem in bad.json()["detail"]

    first = await take_part(
        shop,
        sid,
        customer_id="cus_s1",
        answers={"skin_type": "dry", "wishes": ["面霜", "精华"], "advice": "多出小样"},
    )
    assert first.status_code == 201, first.text
    assert (first.json()["status"], first.json()["points_awarded"], first.json()["points_available"]) == (
        "rewarded",
        20,
        20,
    )
    refused(
        await take_part(shop, sid, customer_id="cus_s1", answers={"skin_type": "oily", "wishes": ["面膜"]}),
        409,
        "limit_reached",
    )
    second = await take_part(
        shop, sid, customer_id="cus_s2", answers={"skin_type": "oily", "wishes": ["面霜"]}
    )
    assert second.status_code == 201
    # The budget (40 points) is spent: a third answer is refused, nothing recorded.
    refused(
        await take_part(shop, sid, customer_id="cus_s3", answers={"skin_type": "dry", "wishes": ["面膜"]}),
        409,
        "budget_exhausted",
    )

    result = await stats(shop, sid)
    assert (result["participants"], result["rewards_given"], result["points_awarded"]) == (2, 2, 40)
    assert result["budget_points_left"] == 0
    assert result["answers"] == {
        "skin_type": {"dry": 1, "oily": 1},
        "wishes": {"面霜": 2, "精华": 1},
        "advice": {"answered": 1},
    }
    assert [e["kind"] for e in await ledger(shop, "cus_s1")] == ["bonus"]
    participated = await events_on(
        infra.bootstrap_servers, Topic.LOYALTY, shop.shop_id, 2, types=frozenset({ACTIVITY_PARTICIPATED})
    )
    assert sorted(e.payload["customer_id"] for e in participated) == ["cus_s1", "cus_s2"]

    # The answers reach segmentation as attributes, and segment rules read them.
    async def stored() -> None:
        profile = await ok(shop, "GET", "/api/v1/customers/cus_s1")
        assert profile["attributes"] == {"skin_type": "dry", "wishes": ["面霜", "精华"], "advice": "多出小样"}

    await eventually(stored, within=20)
    dry = await ok(
        shop,
        "POST",
        "/api/v1/segments",
        {
            "name": "干皮想要面霜",
            "rule": {
                "all": [
                    {"field": "attributes.skin_type", "op": "eq", "value": "dry"},
                    {"field": "attributes.wishes", "op": "in", "value": ["面霜", "面膜"]},
                ]
            },
        },
        status=201,
    )
    members = await ok(shop, "GET", f"/api/v1/segments/{dry['id']}/members")
    assert [m["customer_id"] for m in members["items"]] == ["cus_s1"]
    bad_rule = await call(
        shop,
        "POST",
        "/api/v1/segments",
        {"name": "x", "rule": {"field": "attributes.Skin", "op": "eq", "value": "dry"}},
    )
    assert bad_rule.status_code == 422 and "attribute names" in bad_rule.text

    # Eligibility by that segment: only the dry-skinned member may vote.
    vote = await activity(
        shop,
        type="vote",
        title="下一季新品投票",
        options=[{"id": "cream", "label": "面霜"}, {"id": "serum", "label": "精华"}],
        eligibility={"segment_id": dry["id"]},
    )
    refused(await take_part(shop, vote["id"], customer_id="cus_s2", option="cream"), 403, "not_eligible")
    refused(await take_part(shop, vote["id"], customer_id="cus_s1", option="toner"), 422, "invalid_answer")
    assert (await take_part(shop, vote["id"], customer_id="cus_s1", option="cream")).status_code == 201
    refused(await take_part(shop, vote["id"], customer_id="cus_s1", option="serum"), 409, "limit_reached")
    assert (await stats(shop, vote["id"]))["votes"] == {"cream": 1}
    await invariants_hold(stack, shop.shop_id)


async def test_windows_slots_tiers_limits_and_costs_are_enforced(shop: ShopClient) -> None:
    now = datetime.now(UTC)
    later = await activity(
        shop,
        **SURVEY,
        starts_at=(now + timedelta(days=1)).isoformat(),
        ends_at=(now + timedelta(days=2)).isoformat(),
    )
    refused(await take_part(shop, later["id"], customer_id="cus_w", answers={}), 409, "outside_window")
    draft = await activity(shop, **{**SURVEY, "status": "draft"})
    refused(await take_part(shop, draft["id"], customer_id="cus_w", answers={}), 409, "not_live")

    local = datetime.now(SHANGHAI)
    closed = {"start": "13:00", "end": "14:00"} if local.hour < 12 else {"start": "01:00", "end": "02:00"}
    grab = await activity(shop, type="grab", title="抢积分", slot_stock=5, reward_points=8, slots=[closed])
    refused(await take_part(shop, grab["id"], customer_id="cus_w"), 409, "outside_slot")

    vip_only = await activity(shop, **{**SURVEY, "eligibility": {"min_tier_level": 2}})
    refused(
        await take_part(
            shop, vip_only["id"], customer_id="cus_w", answers={"skin_type": "dry", "wishes": ["面膜"]}
        ),
        403,
        "not_eligible",
    )

    # Costs points to take part; twice a day at most.
    guess = await activity(
        shop,
        type="guess_price",
        title="猜新品价格",
        price="129.00",
        tolerance="5.00",
        cost_points=10,
        reward_points=100,
        per_member_limit=None,
        per_member_daily_limit=2,
    )
    refused(
        await take_part(shop, guess["id"], customer_id="cus_w", guess="120.00"), 409, "insufficient_points"
    )
    await ok(shop, "POST", "/api/v1/loyalty/members/cus_w/signin")  # 5 points, and the member exists
    adjusted = await call(
        shop, "POST", "/api/v1/loyalty/members/cus_w/adjustments", {"points": 20, "reason": "活动测试"}
    )
    assert adjusted.status_code in (200, 201), adjusted.text
    assert (await take_part(shop, guess["id"], customer_id="cus_w", guess="120.00")).status_code == 201
    assert (await take_part(shop, guess["id"], customer_id="cus_w", guess="130.00")).status_code == 201
    refused(await take_part(shop, guess["id"], customer_id="cus_w", guess="129.00"), 409, "limit_reached")
    assert (await member(shop, "cus_w"))["points_available"] == 5

    for body, problem in (
        ({**SURVEY, "options": [{"id": "a", "label": "A"}]}, "`options` belongs to vote"),
        ({"type": "vote", "title": "v", "options": [{"id": "a", "label": "A"}]}, "at least two options"),
        ({"type": "grab", "title": "g", "reward_points": 1}, "slot_stock"),
        ({"type": "favorite_shop", "title": "f"}, "give a reward"),
        (
            {"type": "task_chain", "title": "c", "reward_points": 1, "tasks": [{"type": "signin"}]},
            "two tasks",
        ),
        ({**SURVEY, "ends_at": (now - timedelta(days=1)).isoformat()}, "ends_at must come after"),
    ):
        bad = await call(shop, "POST", "/api/v1/activities", {**window(), **body})
        assert bad.status_code == 422 and problem in bad.text, bad.text


async def test_a_draft_changes_wholly_and_a_live_one_only_where_nobody_took_part_under_it(
    shop: ShopClient,
) -> None:
    draft = await activity(shop, **{**SURVEY, "status": "draft"})
    path = f"/api/v1/activities/{draft['id']}"
    starts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    skin = ["dry", "oily", "mixed", "normal"]
    fixed_questions = [{"id": "skin_type", "text": "您的肤质是？", "options": skin}]
    changed = await ok(
        shop, "PATCH", path, {"questions": fixed_questions, "reward_points": 30, "starts_at": starts}
    )
    assert changed["rules"]["questions"][0]["options"][-1] == "normal"
    assert (changed["rules"]["reward_points"], changed["rules"]["budget_points"]) == (30, 40)
    assert datetime.fromisoformat(changed["starts_at"]) == datetime.fromisoformat(starts)
    # Checked as a new activity is; a refused change leaves the draft as it was.
    for body, problem in (
        ({"questions": []}, "a survey needs questions"),
        ({"options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}, "belongs to vote"),
        ({"starts_at": "2099-01-01T00:00:00+08:00"}, "ends_at must come after starts_at"),
        ({"questions": fixed_questions * 2}, "question and option ids must differ"),
        ({"cost_points": -1}, "greater than or equal to 0"),
        ({"type": "vote"}, "type: Extra inputs are not permitted"),
        ({"starts_at": None}, "cannot be null"),
        ({"slots": None}, "slots"),
        ({"eligibility": {"segment_id": "seg_nowhere"}}, "segment seg_nowhere not found"),
    ):
        refusal = await call(shop, "PATCH", path, body)
        assert refusal.status_code == 422 and problem in refusal.text, (body, refusal.text)
    assert await ok(shop, "GET", path) == changed
    nowhere = await call(
        shop, "POST", "/api/v1/activities", {**window(), **SURVEY, "eligibility": {"segment_id": "seg_x"}}
    )
    assert nowhere.status_code == 422 and "segment seg_x not found" in nowhere.text

    answers = {"skin_type": "normal"}
    live = await ok(shop, "PATCH", path, {"status": "live"})
    assert (await take_part(shop, draft["id"], customer_id="cus_d1", answers=answers)).status_code == 201
    assert (await member(shop, "cus_d1"))["points_available"] == 30
    # Live: members took part under its questions and reward, which stay.
    for body in ({"reward_points": 5}, {"questions": fixed_questions}, {"starts_at": starts}):
        refusal = await call(shop, "PATCH", path, {"title": "新标题", **body})
        refused(refusal, 409, "conflict")
        detail = refusal.json()["detail"]
        assert detail.startswith(f"{next(iter(body))} can change only while activity") and "live" in detail
    assert await ok(shop, "GET", path) == {**live, "rewards_given": 1, "points_awarded": 30}
    # …but who may join from now on, its stock and its budget do, and the API shows what is applied.
    narrowed = await ok(
        shop, "PATCH", path, {"eligibility": {"min_tier_level": 2}, "stock": 10, "budget_points": 300}
    )
    assert narrowed["rules"]["eligibility"] == {"segment_id": None, "min_tier_level": 2}
    assert (narrowed["rules"]["stock"], narrowed["rules"]["budget_points"]) == (10, 300)
    refused(await take_part(shop, draft["id"], customer_id="cus_d2", answers=answers), 403, "not_eligible")
    refused(await call(shop, "PATCH", path, {"stock": 0}), 409, "conflict")


async def test_a_thousand_concurrent_grabs_on_a_pool_of_100_pay_exactly_100(
    shop: ShopClient, stack: ServerSet
) -> None:
    local = datetime.now(SHANGHAI)
    start = max(local - timedelta(minutes=5), local.replace(hour=0, minute=0, second=0, microsecond=0))
    end = min(local + timedelta(minutes=30), local.replace(hour=23, minute=59, second=59, microsecond=0))
    slot = {"start": start.time().isoformat("seconds"), "end": end.time().isoformat("seconds")}
    grab = await activity(
        shop,
        type="grab",
        title="双十一抢红包",
        slots=[slot],
        slot_stock=100,
        reward_points=8,
        passphrase="老客专享",
        per_member_limit=None,
    )
    refused(
        await take_part(shop, grab["id"], customer_id="cus_g0", passphrase="老客"), 403, "wrong_passphrase"
    )

    # The shop's own key would be rate-limited at 1,000 requests at once; this gateway lets them through.
    # All 1,000 are started together; at most 100 are on the wire at once, because httpcore's pool
    # assigns queued requests in O(queued × connections) — a queue of 1,000 costs it more CPU than the
    # grabs themselves (all servers share this test's event loop).
    in_flight = asyncio.Semaphore(100)
    async with extra_gateway(stack, rate_limit_per_second=10_000.0, rate_limit_burst=10_000) as gateway:
        limits = httpx.Limits(max_connections=100, keepalive_expiry=1)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as client:

            async def claim(n: int) -> httpx.Response:
                async with in_flight:
                    return await client.post(
                        f"/api/v1/activities/{grab['id']}/participations",
                        json={"customer_id": f"cus_g{n}", "passphrase": "老客专享"},
                        headers=shop.headers(),
                    )

            responses = await asyncio.gather(*(claim(n) for n in range(1, 1001)))
    outcome = Counter((r.status_code, r.json().get("error")) for r in responses)
    assert outcome == {(201, None): 100, (409, "pool_empty"): 900}, outcome
    winners = [r.json()["customer_id"] for r in responses if r.status_code == 201]
    result = await stats(shop, grab["id"])
    assert (result["participants"], result["rewards_given"], result["points_awarded"]) == (100, 100, 800)
    assert list(result["slots"].values()) == [100]
    assert (await member(shop, winners[0]))["points_available"] == 8
    refused(
        await take_part(shop, grab["id"], customer_id="cus_late", passphrase="老客专享"), 409, "pool_empty"
    )
    # A winner grabs once per slot, even while prizes are left.
    small = await activity(
        shop, type="grab", title="抢积分", slots=[slot], slot_stock=5, reward_points=1, per_member_limit=None
    )
    key = {**shop.headers(), "Idempotency-Key": "grab-once-1"}
    path = f"/api/v1/activities/{small['id']}/participations"
    first = await shop.client.post(path, json={"customer_id": "cus_once"}, headers=key)
    retried = await shop.client.post(path, json={"customer_id": "cus_once"}, headers=key)
    assert first.status_code == retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true" and retried.json()["id"] == first.json()["id"]
    refused(await take_part(shop, small["id"], customer_id="cus_once"), 409, "already_participated")
    await invariants_hold(stack, shop.shop_id)


async def test_price_guesses_are_revealed_after_the_window(shop: ShopClient) -> None:
    guess = await activity(
        shop, type="guess_price", title="猜价格", price="129.00", tolerance="5.00", reward_points=50, stock=1
    )
    assert guess["rules"]["price"] is None  # secret until revealed
    for customer, value in (("cus_p1", "131.50"), ("cus_p2", "99.00"), ("cus_p3", "125.00")):
        response = await take_part(shop, guess["id"], customer_id=customer, guess=value)
        assert response.status_code == 201 and response.json()["status"] == "guessed", response.text
    assert (await member(shop, "cus_p1"))["points_available"] == 0

    ended = await ok(shop, "PATCH", f"/api/v1/activities/{guess['id']}", {"status": "ended"})
    assert ended["revealed"] and ended["rules"]["price"] == "129.00"
    outcome = {
        p["customer_id"]: p["status"]
        for p in (await ok(shop, "GET", f"/api/v1/activities/{guess['id']}/participations"))["items"]
    }
    # Both within ¥5 win; the one reward (stock 1) goes to the earliest guess.
    assert outcome == {"cus_p1": "won", "cus_p2": "lost", "cus_p3": "unrewarded"}
    assert (await member(shop, "cus_p1"))["points_available"] == 50
    refused(await take_part(shop, guess["id"], customer_id="cus_p4", guess="129.00"), 409, "not_live")
    back = await call(shop, "PATCH", f"/api/v1/activities/{guess['id']}", {"status": "live"})
    refused(back, 409, "invalid_transition")


async def test_guesses_past_their_window_are_revealed_by_the_scheduled_job(shop: ShopClient) -> None:
    now = datetime.now(UTC)
    guess = await activity(
        shop,
        type="guess_price",
        title="猜价格 (到点揭晓)",
        price="10.00",
        tolerance="0.50",
        reward_points=7,
        ends_at=(now + timedelta(seconds=2)).isoformat(),
    )
    assert (await take_part(shop, guess["id"], customer_id="cus_j1", guess="10.40")).status_code == 201
    await member_reaches(shop, "cus_j1", points_available=7)
    assert (await ok(shop, "GET", f"/api/v1/activities/{guess['id']}"))["status"] == "ended"


async def test_tasks_complete_from_behaviour_once(shop: ShopClient, stack: ServerSet, infra: Infra) -> None:
    favourite = await activity(shop, type="favorite_shop", title="收藏店铺", reward_points=10)
    cart = await activity(shop, type="add_to_cart", title="加购新品", item_id="TEA-1", reward_points=15)
    template = await ok(
        shop,
        "POST",
        "/api/v1/coupons/templates",
        {"name": "无门槛5元", "kind": "no_threshold", "amount": "5", "valid_days": 30},
        status=201,
    )
    item = await activity(
        shop,
        type="favorite_item",
        title="收藏新品得券",
        item_id="TEA-1",
        reward_coupon_template_id=template["id"],
    )
    chain = await activity(
        shop,
        type="task_chain",
        title="三步连续任务",
        reward_points=30,
        tasks=[
            {"type": "favorite_shop"},
            {"type": "signin"},
            {"type": "activity", "activity_id": favourite["id"]},
        ],
    )
    refused(await take_part(shop, favourite["id"], customer_id="cus_x"), 422, "completed_automatically")

    customer = await event_behaviour(shop, "tb_fan", "favorite_shop")
    await event_behaviour(shop, "tb_fan", "favorite_shop")  # the same task completed twice
    await event_behaviour(shop, "tb_fan", "add_to_cart", "TEA-2")  # another item: not this task
    await event_behaviour(shop, "tb_fan", "add_to_cart", "TEA-1")
    await event_behaviour(shop, "tb_fan", "favorite_item", "TEA-1")
    await event_behaviour(shop, "tb_fan", "favorite_item", "TEA-1")
    await member_reaches(shop, customer, points_available=25)

    async def coupon_given() -> list[dict[str, Any]]:
        coupons = (await ok(shop, "GET", f"/api/v1/loyalty/members/{customer}/coupons"))["items"]
        assert [c["template_id"] for c in coupons] == [template["id"]]
        return list(coupons)

    coupons = await eventually(coupon_given, within=20)
    # The chain's favourite is done; sign-in finishes it ("activity" was the automatic favourite).
    progress = (
        await call(shop, "GET", f"/api/v1/activities/{chain['id']}/participations", customer_id=customer)
    ).json()
    assert progress["items"][0]["status"] == "in_progress"
    await ok(shop, "POST", f"/api/v1/loyalty/members/{customer}/signin")
    entries = Counter((e["kind"], e["points"]) for e in await ledger(shop, customer))
    assert (entries[("bonus", 10)], entries[("bonus", 15)], entries[("bonus", 30)]) == (1, 1, 1), entries
    assert (await stats(shop, favourite["id"]))["rewards_given"] == 1
    assert (await stats(shop, cart["id"]))["rewards_given"] == 1
    assert (await stats(shop, item["id"]))["rewards_given"] == 1
    given = await ok(shop, "GET", f"/api/v1/activities/{item['id']}/participations")
    assert given["items"][0]["coupon_code"] == coupons[0]["code"]

    rewarded = await events_on(
        infra.bootstrap_servers, Topic.LOYALTY, shop.shop_id, 4, types=frozenset({ACTIVITY_REWARDED})
    )
    assert sorted((e.payload["activity_id"], e.payload["points"]) for e in rewarded) == sorted(
        [(favourite["id"], 10), (cart["id"], 15), (item["id"], 0), (chain["id"], 30)]
    )
    assert {e.payload["customer_id"] for e in rewarded} == {customer}
    await invariants_hold(stack, shop.shop_id)


async def test_a_chain_pays_only_when_every_task_is_done(shop: ShopClient) -> None:
    await set_program(shop, signin={"daily_points": 0})
    survey = await activity(shop, **SURVEY)
    chain = await activity(
        shop,
        type="task_chain",
        title="签到 + 问卷",
        reward_points=30,
        tasks=[{"type": "signin"}, {"type": "activity", "activity_id": survey["id"]}],
    )
    await ok(shop, "POST", "/api/v1/loyalty/members/cus_c1/signin")
    await ok(shop, "POST", "/api/v1/loyalty/members/cus_c1/signin")  # the same day again: done already
    assert (await member(shop, "cus_c1"))["points_available"] == 0  # no daily points configured, no bonus yet
    answered = await take_part(
        shop, survey["id"], customer_id="cus_c1", answers={"skin_type": "dry", "wishes": ["面膜"]}
    )
    assert answered.status_code == 201
    assert (await member(shop, "cus_c1"))["points_available"] == 20 + 30
    done = (
        await call(shop, "GET", f"/api/v1/activities/{chain['id']}/participations", customer_id="cus_c1")
    ).json()
    assert done["items"][0]["status"] == "rewarded" and done["items"][0]["answer"] == {"done": [0, 1]}
    # Another member who only signs in gets no bonus.
    await ok(shop, "POST", "/api/v1/loyalty/members/cus_c2/signin")
    assert (await member(shop, "cus_c2"))["points_available"] == 0


async def test_profile_tasks_pay_when_the_profile_has_the_fields(shop: ShopClient) -> None:
    complete = await activity(shop, type="profile_completion", title="完善资料", reward_points=40)
    birthday = await activity(shop, type="birthday_registration", title="登记生日", reward_points=20)
    customer = await buyer(shop, "tb_profile", placed_at=datetime.now(UTC).isoformat(), status="paid")

    async def profiled() -> None:
        assert (await call(shop, "GET", f"/api/v1/customers/{customer}")).status_code == 200

    await eventually(profiled, within=20)
    edit = {"birthday": "1990-05-01"}
    assert (await call(shop, "PATCH", f"/api/v1/customers/{customer}", edit)).status_code == 200
    await member_reaches(shop, customer, points_available=20)
    full = {
        "name": "王芳",
        "gender": "female",
        "mobile": "13800001234",
        "province": "浙江省",
        "city": "杭州市",
    }
    assert (await call(shop, "PATCH", f"/api/v1/customers/{customer}", full)).status_code == 200
    await member_reaches(shop, customer, points_available=60)
    again = {"birthday": "1990-05-02", "name": "王芳芳"}
    assert (await call(shop, "PATCH", f"/api/v1/customers/{customer}", again)).status_code == 200

    async def settled() -> None:
        assert (await stats(shop, complete["id"]))["rewards_given"] == 1
        assert (await stats(shop, birthday["id"]))["rewards_given"] == 1

    await eventually(settled, within=10)
    await asyncio.sleep(1)
    assert (await member(shop, customer))["points_available"] == 60


async def test_referrals_pay_the_inviter_on_the_first_completed_order(
    shop: ShopClient, stack: ServerSet
) -> None:
    await ok(shop, "PATCH", "/api/v1/ingest/settings", {"merge_by_mobile": False})
    await set_program(shop, earn_rate="0")  # only the referral moves points here
    now = datetime.now(UTC)
    inviter = await buyer(
        shop, "tb_inviter", mobile="13900000001", placed_at=(now - timedelta(days=30)).isoformat()
    )
    regular = await buyer(shop, "tb_regular", placed_at=(now - timedelta(days=30)).isoformat())
    twin = await buyer(shop, "tb_twin", mobile="13900000001", status="created", placed_at=now.isoformat())
    invitee = await buyer(
        shop,
        "tb_invitee",
        status="paid",
        total="30.00",
        order_id="R-0",
        placed_at=(now - timedelta(days=1)).isoformat(),
    )
    referral = await activity(shop, type="referral", title="邀请好友", reward_points=100)

    async def profiles_known() -> None:
        assert (await ok(shop, "GET", f"/api/v1/customers/{twin}"))["mobile"] is not None

    await eventually(profiles_known, within=20)
    code = (
        await ok(shop, "POST", f"/api/v1/activities/{referral['id']}/invitations", {"customer_id": inviter})
    )["code"]
    again = await ok(
        shop, "POST", f"/api/v1/activities/{referral['id']}/invitations", {"customer_id": inviter}
    )
    assert again["code"] == code

    refused(
        await take_part(shop, referral["id"], customer_id=inviter, invite_code=code), 409, "referral_refused"
    )
    refused(
        await take_part(shop, referral["id"], customer_id=regular, invite_code=code), 409, "referral_refused"
    )
    same_phone = await take_part(shop, referral["id"], customer_id=twin, invite_code=code)
    refused(same_phone, 409, "referral_refused")
    assert "phone" in same_phone.json()["detail"]
    refused(
        await take_part(shop, referral["id"], customer_id=invitee, invite_code="NOPE1234"), 404, "not_found"
    )
    accepted = await take_part(shop, referral["id"], customer_id=invitee, invite_code=code)
    assert accepted.status_code == 201 and accepted.json()["status"] == "pending", accepted.text
    refused(
        await take_part(shop, referral["id"], customer_id=invitee, invite_code=code),
        409,
        "already_participated",
    )
    # A loop: the invitee invites their inviter back.
    back = (
        await ok(shop, "POST", f"/api/v1/activities/{referral['id']}/invitations", {"customer_id": invitee})
    )["code"]
    loop = await take_part(shop, referral["id"], customer_id=inviter, invite_code=back)
    refused(loop, 409, "referral_refused")
    assert "loop" in loop.json()["detail"]
    assert (await member(shop, inviter))["points_available"] == 0

    # The invitee's first order completes: the inviter earns, once, however often it is announced.
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await buyer(shop, "tb_invitee", order_id="R-1", total="88.00", placed_at=soon.isoformat(), status="paid")
    await buyer(shop, "tb_invitee", order_id="R-2", total="50.00", placed_at=soon.isoformat(), status="paid")
    await buyer(
        shop,
        "tb_invitee",
        order_id="R-1",
        total="88.00",
        placed_at=soon.isoformat(),
        status="completed",
        modified_at=(soon + timedelta(minutes=1)).isoformat(),
    )
    await member_reaches(shop, inviter, points_available=100)

    async def settled() -> dict[str, Any]:
        result = await stats(shop, referral["id"])
        # Hand-computed: R-1 (88.00) and R-2 (50.00) were placed after the invitation; R-0 (30.00) before.
        assert (result["participants"], result["orders_within_7_days"], result["revenue_within_7_days"]) == (
            1,
            2,
            "138.00",
        )
        assert result["by_status"] == {"rewarded": 1}
        return result

    await eventually(settled, within=20)
    await invariants_hold(stack, shop.shop_id)


async def test_activities_and_a_members_coupons_come_page_by_page(shop: ShopClient) -> None:
    made = [(await activity(shop, **{**SURVEY, "title": f"调查 {n}"}))["id"] for n in range(3)]
    first = await ok(shop, "GET", "/api/v1/activities?limit=2")
    assert [a["id"] for a in first["items"]] == made[:0:-1] and first["next_cursor"]
    rest = await ok(shop, "GET", f"/api/v1/activities?limit=2&cursor={first['next_cursor']}")
    assert ([a["id"] for a in rest["items"]], rest["next_cursor"]) == ([made[0]], None)
    refused(await call(shop, "GET", "/api/v1/activities?cursor=nonsense"), 400, "bad_request")

    await ok(shop, "POST", "/api/v1/loyalty/members/cus_pages/signin", {})
    template = {"name": "无门槛减5", "kind": "no_threshold", "amount": "5", "valid_days": 30}
    template_id = (await ok(shop, "POST", "/api/v1/coupons/templates", template, status=201))["id"]
    issued = []
    for _ in range(3):
        answer = await ok(
            shop, "POST", f"/api/v1/coupons/templates/{template_id}/issue", {"customer_ids": ["cus_pages"]}
        )
        issued.append(answer["codes"]["cus_pages"])
    path = "/api/v1/loyalty/members/cus_pages/coupons"
    page = await ok(shop, "GET", f"{path}?limit=2")
    seen = [c["code"] for c in page["items"]]
    page = await ok(shop, "GET", f"{path}?limit=2&cursor={page['next_cursor']}")
    assert page["next_cursor"] is None
    assert seen + [c["code"] for c in page["items"]] == issued[::-1]
