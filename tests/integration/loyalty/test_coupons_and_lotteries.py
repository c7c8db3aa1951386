"""Coupons (issued by id or segment, redeemed once by orders, reuses and uses against the rules
flagged) and lotteries (odds, stock, budget), plus the profile bonus that segmentation's edits trigger."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from laoke.contracts.loyalty import COUPON_REDEEMED
from laoke.contracts.orders import OrderStatus
from laoke.contracts.topics import Topic
from laoke.testing.factories import order_json
from laoke.testing.infra import Infra, events_on, eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.loyalty.helpers import (
    T0,
    invariants_hold,
    ledger,
    member,
    order_event,
    publish,
    set_program,
)


async def post(shop: ShopClient, path: str, body: object = None) -> Any:
    return await shop.client.post(path, json=body, headers=shop.headers())


async def test_coupons_issue_redeem_once_and_report(
    shop: ShopClient, other_shop: ShopClient, stack: ServerSet, infra: Infra
) -> None:
    for customer in ("cus_c1", "cus_c2"):
        await post(shop, f"/api/v1/loyalty/members/{customer}/signin")
    template = await post(
        shop,
        "/api/v1/coupons/templates",
        {
            "name": "满200减20",
            "kind": "spend_save",
            "threshold": "200",
            "amount": "20",
            "valid_days": 30,
            "per_customer_limit": 1,
            "total_limit": 3,
        },
    )
    assert template.status_code == 201, template.text
    template_id = template.json()["id"]
    bad = await post(
        shop,
        "/api/v1/coupons/templates",
        {"name": "x", "kind": "spend_save", "threshold": "10", "amount": "20"},
    )
    assert bad.status_code == 422

    issued = await post(
        shop, f"/api/v1/coupons/templates/{template_id}/issue", {"customer_ids": ["cus_c1", "cus_c2"]}
    )
    assert issued.status_code == 200, issued.text
    codes = issued.json()["codes"]
    assert issued.json()["issued"] == 2 and len(set(codes.values())) == 2
    again = await post(shop, f"/api/v1/coupons/templates/{template_id}/issue", {"customer_ids": ["cus_c1"]})
    assert again.json() == {"issued": 0, "skipped_at_limit": ["cus_c1"], "codes": {}}
    unknown = await post(
        shop, f"/api/v1/coupons/templates/{template_id}/issue", {"customer_ids": ["cus_ghost"]}
    )
    assert unknown.status_code == 422 and "cus_ghost" in unknown.text
    foreign = await post(
        other_shop, f"/api/v1/coupons/templates/{template_id}/issue", {"customer_ids": ["cus_c1"]}
    )
    assert foreign.status_code == 404

    code = codes["cus_c1"]
    # The buyer uses the code on an order; the same code on a second order is flagged, not counted.
    await publish(
        stack,
        order_event(
            shop.shop_id,
            "cus_c1",
            "ord_cp1",
            OrderStatus.PAID,
            paid_fen=25_000,
            modified=T0,
            coupon_codes=[code],
        ),
        order_event(
            shop.shop_id,
            "cus_c1",
            "ord_cp1",
            OrderStatus.COMPLETED,
            paid_fen=25_000,
            modified=T0 + timedelta(days=1),
            completed=True,
            coupon_codes=[code],
        ),
        order_event(
            shop.shop_id,
            "cus_c1",
            "ord_cp2",
            OrderStatus.PAID,
            paid_fen=9_000,
            modified=T0,
            coupon_codes=[code.lower()],
        ),
    )

    async def reported() -> None:
        stats = (
            await shop.client.get(f"/api/v1/coupons/templates/{template_id}", headers=shop.headers())
        ).json()
        assert (stats["issued"], stats["redeemed"], stats["revenue"], stats["reuses_flagged"]) == (
            2,
            1,
            "250.00",
            1,
        )
        assert stats["flagged"] == {"reused": 1}

    await eventually(reported, within=20)
    mine = (await shop.client.get("/api/v1/loyalty/members/cus_c1/coupons", headers=shop.headers())).json()[
        "items"
    ]
    assert [(c["code"], c["status"], c["redeemed_order_id"]) for c in mine] == [(code, "redeemed", "ord_cp1")]
    [redeemed] = await events_on(
        infra.bootstrap_servers, Topic.LOYALTY, shop.shop_id, 1, types=frozenset({COUPON_REDEEMED})
    )
    assert (redeemed.payload["code"], redeemed.payload["order_id"]) == (code, "ord_cp1")


async def test_uses_against_the_rules_are_counted_and_flagged(
    shop: ShopClient, other_shop: ShopClient, stack: ServerSet
) -> None:
    now = datetime.now(UTC)  # coupons are issued now: a template that has ended issues none
    holders = [f"cus_r{n}" for n in range(5)]
    for customer in holders:
        await post(shop, f"/api/v1/loyalty/members/{customer}/signin")
    template = await post(
        shop,
        "/api/v1/coupons/templates",
        {
            "name": "满200减20 三月",
            "kind": "spend_save",
            "threshold": "200",
            "amount": "20",
            "valid_from": (now - timedelta(days=10)).isoformat(),
            "valid_until": (now + timedelta(days=10)).isoformat(),
        },
    )
    assert template.status_code == 201, template.text
    template_id = template.json()["id"]
    issued = await post(shop, f"/api/v1/coupons/templates/{template_id}/issue", {"customer_ids": holders})
    assert issued.status_code == 200, issued.text
    codes = issued.json()["codes"]

    def used(holder: str, buyer: str, order_id: str, yuan: int, placed_day: int) -> Any:
        return order_event(
            shop.shop_id,
            buyer,
            order_id,
            OrderStatus.PAID,
            paid_fen=yuan * 100,
            modified=now + timedelta(days=placed_day + 1),  # placed a day before it was modified
            coupon_codes=[codes[holder]],
        )

    await publish(
        stack,
        used("cus_r0", "cus_r0", "ord_fair", 180, 0),  # 180 after the 20 off is 200 before it: fair
        used("cus_r1", "cus_r1", "ord_small", 150, 0),
        used("cus_r2", "cus_r9", "ord_shared", 300, 0),
        used("cus_r3", "cus_r3", "ord_late", 300, 20),
        used("cus_r4", "cus_r4", "ord_early", 100, -20),
    )

    async def reported() -> dict[str, Any]:
        stats = (
            await shop.client.get(f"/api/v1/coupons/templates/{template_id}", headers=shop.headers())
        ).json()
        # Every use spent its code and counts; the four against the rules are flagged.
        assert (stats["redeemed"], stats["revenue"], stats["reuses_flagged"]) == (5, "1030.00", 0)
        assert stats["flagged"] == {"below_threshold": 2, "other_buyer": 1, "expired": 1, "not_yet_valid": 1}
        return stats

    await eventually(reported, within=20)
    path = f"/api/v1/coupons/templates/{template_id}/flags"
    flags = (await shop.client.get(path, headers=shop.headers())).json()
    assert sorted(
        (f["order_id"], f["reason"], f["code"], f["holder_id"], f["buyer_id"]) for f in flags["items"]
    ) == [
        ("ord_early", "below_threshold", codes["cus_r4"], "cus_r4", "cus_r4"),
        ("ord_early", "not_yet_valid", codes["cus_r4"], "cus_r4", "cus_r4"),
        ("ord_late", "expired", codes["cus_r3"], "cus_r3", "cus_r3"),
        ("ord_shared", "other_buyer", codes["cus_r2"], "cus_r2", "cus_r9"),
        ("ord_small", "below_threshold", codes["cus_r1"], "cus_r1", "cus_r1"),
    ]
    assert flags["next_cursor"] is None
    shared = (await shop.client.get(path, params={"reason": "other_buyer"}, headers=shop.headers())).json()
    assert [f["order_id"] for f in shared["items"]] == ["ord_shared"]
    first = (await shop.client.get(path, params={"limit": 3}, headers=shop.headers())).json()
    rest = (
        await shop.client.get(
            path, params={"limit": 3, "cursor": first["next_cursor"]}, headers=shop.headers()
        )
    ).json()
    assert (len(first["items"]), len(rest["items"]), rest["next_cursor"]) == (3, 2, None)
    assert {f["order_id"] + f["reason"] for f in first["items"] + rest["items"]} == {
        f["order_id"] + f["reason"] for f in flags["items"]
    }
    bad_reason = await shop.client.get(path, params={"reason": "stolen"}, headers=shop.headers())
    assert bad_reason.status_code == 422
    assert (await other_shop.client.get(path, headers=other_shop.headers())).status_code == 404
    # The code is spent whatever was wrong with its first use: the holder sees it redeemed.
    mine = (await shop.client.get("/api/v1/loyalty/members/cus_r2/coupons", headers=shop.headers())).json()
    assert [(c["status"], c["redeemed_order_id"]) for c in mine["items"]] == [("redeemed", "ord_shared")]


async def test_coupons_for_a_segment(shop: ShopClient) -> None:
    buyers = []
    for n, total in enumerate(("800.00", "900.00", "20.00")):
        body = order_json(f"SEG-{n}", buyer=f"seg-buyer-{n}", total=total)
        buyers.append((await post(shop, "/api/v1/orders", body)).json()["order"]["customer_id"])
    big = {"field": "total_spent", "op": "gte", "value": "500"}

    async def segment_ready() -> str:
        preview = await post(shop, "/api/v1/segments/preview", {"rule": big})
        assert preview.json()["size"] == 2
        for customer in buyers:
            assert (
                await shop.client.get(f"/api/v1/loyalty/members/{customer}", headers=shop.headers())
            ).status_code == 200
        return str((await post(shop, "/api/v1/segments", {"name": "大客户", "rule": big})).json()["id"])

    segment_id = await eventually(segment_ready, within=20)
    template = await post(
        shop, "/api/v1/coupons/templates", {"name": "10元无门槛", "kind": "no_threshold", "amount": "10"}
    )
    issued = await post(
        shop, f"/api/v1/coupons/templates/{template.json()['id']}/issue", {"segment_id": segment_id}
    )
    assert issued.status_code == 200, issued.text
    assert sorted(issued.json()["codes"]) == sorted(buyers[:2])
    missing = await post(
        shop, f"/api/v1/coupons/templates/{template.json()['id']}/issue", {"segment_id": "seg_nope"}
    )
    assert missing.status_code == 404


async def test_lottery_odds_stock_and_budget(shop: ShopClient, stack: ServerSet) -> None:
    await set_program(shop, signin={"daily_points": 0})
    await post(shop, "/api/v1/loyalty/members/cus_lucky/signin")
    await shop.client.post(
        "/api/v1/loyalty/members/cus_lucky/adjustments",
        json={"points": 5000, "reason": "活动"},
        headers=shop.headers(),
    )
    cup = await post(
        shop, "/api/v1/coupons/templates", {"name": "茶杯兑换券", "kind": "no_threshold", "amount": "30"}
    )
    lottery = await post(
        shop,
        "/api/v1/loyalty/lotteries",
        {
            "name": "幸运转盘",
            "cost_points": 10,
            "free_draws_per_day": 1,
            "points_budget": 150,
            "prizes": [
                {"name": "50积分", "probability": "0.3", "points": 50},
                {"name": "茶杯", "probability": "0.3", "stock": 3, "coupon_template_id": cup.json()["id"]},
            ],
        },
    )
    assert lottery.status_code == 201, lottery.text
    lottery_id = lottery.json()["id"]
    too_likely = await post(
        shop,
        "/api/v1/loyalty/lotteries",
        {
            "name": "x",
            "cost_points": 1,
            "prizes": [
                {"name": "a", "probability": "0.7", "points": 1},
                {"name": "b", "probability": "0.4", "points": 1},
            ],
        },
    )
    assert too_likely.status_code == 422

    draws = [
        (
            await post(shop, f"/api/v1/loyalty/lotteries/{lottery_id}/draws", {"customer_id": "cus_lucky"})
        ).json()
        for _ in range(200)
    ]
    assert draws[0]["free"] and not draws[1]["free"] and draws[1]["cost_points"] == 10
    won = Counter(d["prize"]["name"] for d in draws if d["won"])
    assert won["50积分"] == 3, "the 150-point budget pays three 50-point prizes, never a fourth"
    assert won["茶杯"] == 3, "a prize with stock 3 is won three times, never more"
    stats = (await shop.client.get(f"/api/v1/loyalty/lotteries/{lottery_id}", headers=shop.headers())).json()
    assert stats["draws"] == 200 and stats["points_awarded"] == 150
    assert [p["stock"] for p in stats["prizes"]] == [None, 0]
    balance = (await member(shop, "cus_lucky"))["points_available"]
    assert balance == 5000 - 199 * 10 + 150
    coupons = (
        await shop.client.get("/api/v1/loyalty/members/cus_lucky/coupons", headers=shop.headers())
    ).json()
    assert len(coupons["items"]) == 3
    await invariants_hold(stack, shop.shop_id)


async def test_lottery_odds_are_honoured(shop: ShopClient) -> None:
    await post(shop, "/api/v1/loyalty/members/cus_odds/signin")
    lottery = await post(
        shop,
        "/api/v1/loyalty/lotteries",
        {"name": "odds", "cost_points": 0, "prizes": [{"name": "half", "probability": "0.5", "points": 1}]},
    )
    draws = [
        (
            await post(
                shop, f"/api/v1/loyalty/lotteries/{lottery.json()['id']}/draws", {"customer_id": "cus_odds"}
            )
        ).json()
        for _ in range(400)
    ]
    wins = sum(d["won"] for d in draws)
    # Binomial(400, 0.5): mean 200, sd 10; outside ±5 sd would mean the odds are not honoured.
    assert 150 <= wins <= 250, wins


async def test_profile_bonus_once_from_a_complete_profile(shop: ShopClient, stack: ServerSet) -> None:
    await set_program(shop, profile_bonus=50, signin={"daily_points": 0})
    body = order_json(
        "PB-1",
        buyer="pb",
        total="10.00",
        receiver={"name": "李雷", "phone": "13800138000", "address": "浙江省杭州市西湖区文三路100号"},
    )
    customer = (await post(shop, "/api/v1/orders", body)).json()["order"]["customer_id"]

    async def profiled() -> None:
        assert (
            await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())
        ).status_code == 200

    await eventually(profiled, within=20)
    patch = {"gender": "female", "birthday": "1990-05-05"}
    for _ in range(2):  # edited twice: the bonus is paid once
        response = await shop.client.patch(
            f"/api/v1/customers/{customer}", json=patch, headers=shop.headers()
        )
        assert response.status_code == 200, response.text

    async def paid() -> None:
        assert (await member(shop, customer))["points_available"] == 60  # 10 for the order + 50

    await eventually(paid, within=20)
    bonuses = [e for e in await ledger(shop, customer) if e["kind"] == "bonus"]
    assert [b["points"] for b in bonuses] == [50]


async def test_a_coupon_that_cannot_be_issued_wins_nothing_and_costs_nothing(
    shop: ShopClient, stack: ServerSet
) -> None:
    await set_program(shop, signin={"daily_points": 0})
    await post(shop, "/api/v1/loyalty/members/cus_once/signin")
    await shop.client.post(
        "/api/v1/loyalty/members/cus_once/adjustments",
        json={"points": 100, "reason": "活动"},
        headers=shop.headers(),
    )
    one_each = await post(
        shop,
        "/api/v1/coupons/templates",
        {"name": "新客券", "kind": "no_threshold", "amount": "10", "per_customer_limit": 1},
    )
    template_id = one_each.json()["id"]
    lottery = await post(
        shop,
        "/api/v1/loyalty/lotteries",
        {
            "name": "必中转盘",
            "cost_points": 1,
            "prizes": [{"name": "新客券", "probability": "1", "stock": 5, "coupon_template_id": template_id}],
        },
    )
    draw = f"/api/v1/loyalty/lotteries/{lottery.json()['id']}/draws"
    first = (await post(shop, draw, {"customer_id": "cus_once"})).json()
    assert first["won"] and first["coupon_code"], first
    # The member holds the one coupon the template allows: the sure prize becomes no prize, the stock
    # stays, and the draw still answers (before, it was recorded as won without a coupon).
    second = await post(shop, draw, {"customer_id": "cus_once"})
    assert second.status_code == 201 and not second.json()["won"] and second.json()["coupon_code"] is None
    stats = (
        await shop.client.get(f"/api/v1/loyalty/lotteries/{lottery.json()['id']}", headers=shop.headers())
    ).json()
    assert [(p["stock"], p["awarded"]) for p in stats["prizes"]] == [(4, 1)]

    # A coupon reward the member cannot get any more is refused whole: no points taken.
    reward = await post(
        shop,
        "/api/v1/loyalty/rewards",
        {"name": "新客券兑换", "kind": "coupon", "points_cost": 20, "coupon_template_id": template_id},
    )
    before = (await member(shop, "cus_once"))["points_available"]
    refused = await post(
        shop, "/api/v1/loyalty/members/cus_once/redemptions", {"reward_id": reward.json()["id"]}
    )
    assert refused.status_code == 409 and refused.json()["error"] == "limit_reached", refused.text
    assert (await member(shop, "cus_once"))["points_available"] == before
    held = (await shop.client.get("/api/v1/loyalty/members/cus_once/coupons", headers=shop.headers())).json()
    assert len(held["items"]) == 1
    await invariants_hold(stack, shop.shop_id)


async def test_a_coupon_template_is_renamed_limited_and_stopped(shop: ShopClient) -> None:
    key = shop.headers()
    for customer in ("cus_stop_a", "cus_stop_b", "cus_stop_c"):
        await post(shop, f"/api/v1/loyalty/members/{customer}/signin")
    made = await post(
        shop,
        "/api/v1/coupons/templates",
        {"name": "5元券", "kind": "no_threshold", "amount": "5", "valid_from": "2026-01-01T00:00:00+08:00"},
    )
    template = made.json()["id"]
    url = f"/api/v1/coupons/templates/{template}"
    issued = await post(shop, f"{url}/issue", {"customer_ids": ["cus_stop_a", "cus_stop_b"]})
    assert issued.json()["issued"] == 2

    below = await shop.client.patch(url, json={"total_limit": 1}, headers=key)
    assert below.status_code == 422 and "below the 2 already issued" in below.json()["detail"]
    early = await shop.client.patch(url, json={"valid_until": "2025-12-31T00:00:00+08:00"}, headers=key)
    assert early.status_code == 422 and "valid_until" in early.json()["detail"]
    assert (await shop.client.patch(url, json={"name": None}, headers=key)).status_code == 422
    # 停发: the limit at what was issued; nothing more goes out, by hand or as a reward.
    stopped = await shop.client.patch(url, json={"total_limit": 2, "name": "5元券（已停发）"}, headers=key)
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["name"], stopped.json()["total_limit"], stopped.json()["issued"]) == (
        "5元券（已停发）",
        2,
        2,
    )
    refused = await post(shop, f"{url}/issue", {"customer_ids": ["cus_stop_c"]})
    assert refused.status_code == 409 and refused.json()["error"] == "limit_reached"
    reward = await post(
        shop,
        "/api/v1/loyalty/rewards",
        {"name": "换5元券", "kind": "coupon", "points_cost": 1, "coupon_template_id": template},
    )
    redeemed = await post(
        shop, "/api/v1/loyalty/members/cus_stop_c/redemptions", {"reward_id": reward.json()["id"]}
    )
    assert redeemed.status_code == 409 and redeemed.json()["error"] == "limit_reached"
    # Issuing again, without a limit.
    assert (await shop.client.patch(url, json={"total_limit": None}, headers=key)).json()[
        "total_limit"
    ] is None
    assert (await post(shop, f"{url}/issue", {"customer_ids": ["cus_stop_c"]})).json()["issued"] == 1


async def test_a_coupon_templates_terms_change_until_the_first_is_issued(shop: ShopClient) -> None:
    key = shop.headers()
    await post(shop, "/api/v1/loyalty/members/cus_terms/signin")
    made = await post(
        shop,
        "/api/v1/coupons/templates",
        {"name": "满200减20", "kind": "spend_save", "threshold": "200", "amount": "20"},
    )
    url = f"/api/v1/coupons/templates/{made.json()['id']}"

    # A typo caught before anyone holds one: the terms change, checked as a new template's are.
    fixed = await shop.client.patch(
        url, json={"name": "满300减30", "threshold": "300", "amount": "30"}, headers=key
    )
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["name"], fixed.json()["threshold"], fixed.json()["amount"]) == (
        "满300减30",
        "300.00",
        "30.00",
    )
    upside_down = await shop.client.patch(url, json={"amount": "400"}, headers=key)
    assert upside_down.status_code == 422 and "threshold above its amount" in upside_down.json()["detail"]
    # Another kind keeps nothing of the old one's terms that it was not given again.
    percent = await shop.client.patch(url, json={"kind": "percent_off", "percent_off": 10}, headers=key)
    assert percent.status_code == 200, percent.text
    assert (percent.json()["kind"], percent.json()["percent_off"], percent.json()["amount"]) == (
        "percent_off",
        10,
        None,
    )
    assert (await shop.client.patch(url, json={"kind": "no_threshold"}, headers=key)).status_code == 422
    assert (await shop.client.patch(url, json={"kind": None}, headers=key)).status_code == 422
    stopped = await shop.client.patch(url, json={"total_limit": 0}, headers=key)  # 停发 before any is issued
    assert stopped.status_code == 200 and stopped.json()["total_limit"] == 0
    await shop.client.patch(url, json={"total_limit": None}, headers=key)

    # Once one is issued, it keeps the terms it was issued with: new terms need a new template.
    assert (await post(shop, f"{url}/issue", {"customer_ids": ["cus_terms"]})).json()["issued"] == 1
    locked = await shop.client.patch(url, json={"percent_off": 20}, headers=key)
    assert locked.status_code == 409 and "1 coupons of this template are issued" in locked.json()["detail"]
    renamed = await shop.client.patch(url, json={"name": "九折券"}, headers=key)
    assert renamed.status_code == 200 and renamed.json()["percent_off"] == 10


async def test_a_lottery_is_stopped_restarted_restocked_and_its_budget_raised(
    shop: ShopClient, other_shop: ShopClient, stack: ServerSet
) -> None:
    await set_program(shop, signin={"daily_points": 0})
    await post(shop, "/api/v1/loyalty/members/cus_wheel/signin")
    await post(shop, "/api/v1/loyalty/members/cus_wheel/adjustments", {"points": 1000, "reason": "活动"})
    body = {
        "name": "转盘",
        "cost_points": 10,
        "points_budget": 20,
        "prizes": [{"name": "20积分", "probability": "1", "points": 20, "stock": 1}],
    }
    lottery = (await post(shop, "/api/v1/loyalty/lotteries", body)).json()
    path, prize_id = f"/api/v1/loyalty/lotteries/{lottery['id']}", lottery["prizes"][0]["id"]

    async def draw() -> dict[str, Any]:
        response = await post(shop, f"{path}/draws", {"customer_id": "cus_wheel"})
        assert response.status_code == 201, response.text
        return dict(response.json())

    assert (await draw())["won"] and not (await draw())["won"]  # its one prize is gone
    for change, status, said in (
        ({"points_budget": 10}, 409, "below what was already awarded (20)"),
        ({"prizes": [{"id": "prz_elsewhere", "stock": 5}]}, 422, "prz_elsewhere not a prize of lottery"),
        ({"name": None}, 422, "cannot be null"),
        ({"prizes": [{"id": prize_id, "stock": -1}]}, 422, "greater than or equal to 0"),
        ({"probability": "0.5"}, 422, "Extra inputs are not permitted"),
    ):
        refused = await shop.client.patch(path, json=change, headers=shop.headers())
        assert refused.status_code == status and said in refused.text, (change, refused.text)
    foreign = await other_shop.client.patch(path, json={"active": False}, headers=other_shop.headers())
    assert foreign.status_code == 404

    # Restocked, with room in the budget for one more: won once more, then nothing again.
    restocked = await shop.client.patch(
        path, json={"prizes": [{"id": prize_id, "stock": 5}], "points_budget": 40}, headers=shop.headers()
    )
    assert restocked.status_code == 200, restocked.text
    assert (restocked.json()["prizes"][0]["stock"], restocked.json()["points_budget"]) == (5, 40)
    assert (await draw())["won"] and not (await draw())["won"]

    stopped = await shop.client.patch(
        path, json={"active": False, "name": "转盘（已结束）"}, headers=shop.headers()
    )
    assert (stopped.json()["active"], stopped.json()["name"]) == (False, "转盘（已结束）")
    refused = await post(shop, f"{path}/draws", {"customer_id": "cus_wheel"})
    assert (refused.status_code, refused.json()["error"]) == (409, "lottery_stopped")
    before = (await member(shop, "cus_wheel"))["points_available"]
    await shop.client.patch(path, json={"active": True, "cost_points": 0}, headers=shop.headers())
    assert (await draw())["cost_points"] == 0
    assert (await member(shop, "cus_wheel"))["points_available"] == before  # free now, nothing won
    await invariants_hold(stack, shop.shop_id)
