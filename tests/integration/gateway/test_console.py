"""The console over HTTP: signing in, every page rendering for a shop with data, another shop's data
staying out of reach, and form errors shown next to their fields. (The browser tests in
tests/e2e/test_console_browser.py click through the same pages in Chromium.)"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.console.activities import JSON_EXAMPLE
from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import TEST_ADMIN_TOKEN, ServerSet
from tests.integration.messaging.helpers import (
    LOCAL_ACCESS_KEY_SECRET,
    buyer,
    configure_sms,
    segment_of_everyone,
    template,
)
from tests.integration.segmentation.shopping import profile as profiled


@pytest.fixture
async def browser_like(stack: ServerSet) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookie jar, as a browser has."""
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        yield client


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/console/login", data={"api_key": key})


async def test_pages_need_a_session_and_a_valid_key(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    first = await browser_like.get("/console")
    assert first.status_code == 303 and first.headers["location"] == "/console/login"
    bad = await sign_in(browser_like, "lk_nope_nope")
    assert bad.status_code == 401 and "密钥无效" in bad.text
    forged = browser_like.cookies.set("laoke_console", "bGtfeA.0000", path="/console")
    assert forged is None and (await browser_like.get("/console")).status_code == 303
    good = await sign_in(browser_like, shop.api_key)
    assert good.status_code == 303 and good.headers["location"] == "/console"
    assert (
        "httponly" in good.headers["set-cookie"].lower()
        and "samesite=strict" in good.headers["set-cookie"].lower()
    )
    assert (await browser_like.get("/console")).status_code == 200
    assert (await browser_like.post("/console/logout")).status_code == 303
    assert (await browser_like.get("/console")).status_code == 303


async def test_every_page_renders_and_other_shops_data_stays_out_of_reach(
    browser_like: httpx.AsyncClient, shop: ShopClient, other_shop: ShopClient
) -> None:
    customer = await buyer(shop, "console-buyer", name="王小明", mobile="13800138000", total="120.00")
    stranger = await buyer(other_shop, "console-stranger")

    await profiled(shop, customer, 1)
    await sign_in(browser_like, shop.api_key)
    for path in (
        "/console",
        "/console/rfm",
        "/console/customers",
        f"/console/customers/{customer}",
        "/console/segments",
        "/console/segments/new",
        "/console/loyalty",
        "/console/activities",
        "/console/campaigns",
        "/console/campaigns/new",
        "/console/automations",
        "/console/imports",
        "/console/settings",
        "/console/inbox",
    ):
        page = await browser_like.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert "<html" in page.text and "老客" in page.text, path
    overview = (await browser_like.get("/console")).text
    # 老客 are buyers who came back: one buyer with one order is none of them (a new buyer is not 老客).
    assert "0 / 1 位买家" in overview and "0.0%" in overview
    listing = (await browser_like.get("/console/customers")).text
    # The last order, placed 10:00 Shanghai time (02:00 UTC, as the API answers), on the shop's clock.
    assert "王" in listing and "2026-11-01 10:00" in listing and "2026-11-01 02:00" not in listing
    grid = (await browser_like.get("/console/rfm")).text
    assert '<small class="band">≤30 天</small>' in grid and '<small class="band">3–4 单</small>' in grid
    builder = (await browser_like.get("/console/segments/new")).text
    assert '<option value="total_spent" >累计消费 (元)</option>' in builder
    assert ">大于等于</option>" in builder
    profile = (await browser_like.get(f"/console/customers/{customer}")).text
    # The API's values in the page's words: the order's status, the consent, the person's 姓名.
    assert "交易成功" in profile and "短信 ✓" in profile and "姓名" in profile and "completed" not in profile
    charts = await browser_like.get("/console/overview/charts")  # loaded into the overview by htmx
    assert charts.status_code == 200 and 'id="growth"' in charts.text and "积分负债" in charts.text
    assert "老客" in charts.text and "returning" not in charts.text  # the charts' legends too
    assert "<b>近 12 个月</b>" in charts.text and 'hx-get="/console/overview/charts?months=36"' in charts.text
    longer = (await browser_like.get("/console/overview/charts", params={"months": "36"})).text
    assert "<b>近 36 个月</b>" in longer and longer.count('"labels"') == 3
    assert len(longer.split('"labels": [')[1].split("]")[0].split(",")) == 36  # one bar a month
    odd = (await browser_like.get("/console/overview/charts", params={"months": "7"})).text
    assert "<b>近 12 个月</b>" in odd  # only the offered periods
    assert (await browser_like.get(f"/console/customers/{stranger}")).status_code == 404
    english = await browser_like.get(
        "/console/lang/en", headers={"referer": str(browser_like.base_url) + "/console/rfm"}
    )
    assert english.headers["location"].endswith("/console/rfm")
    assert "RFM classes" in (await browser_like.get("/console/rfm")).text
    for asset in ("/console/static/console.js", "/console/static/vendor/chart-4.6.1.umd.min.js"):
        assert (await browser_like.get(asset)).status_code == 200


async def test_times_are_shown_on_the_shops_own_clock(
    browser_like: httpx.AsyncClient, gateway: httpx.AsyncClient
) -> None:
    made = await gateway.post(
        "/api/v1/admin/shops",
        json={"name": "Pacific Tea", "timezone": "America/Los_Angeles", "currency": "USD"},
        headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"},
    )
    body = made.json()
    pacific = ShopClient(body["shop_id"], body["api_key"], body["webhook_secret"], gateway)
    await buyer(pacific, "la-buyer", name="Ann Lee", placed_at="2026-11-01T10:00:00+08:00", total="1250.00")
    await sign_in(browser_like, pacific.api_key)

    async def listed() -> None:
        page = (await browser_like.get("/console/customers")).text
        # 10:00 in Shanghai is 19:00 the evening before in Los Angeles.
        assert "Ann Lee" in page and "2026-10-31 19:00" in page, page[-2000:]
        # ... and a dollar shop's sums are in dollars, by their thousands.
        assert "$1,250.00" in page and "¥" not in page

    await eventually(listed, within=20)


async def test_customers_are_listed_by_spend_orders_or_last_order(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    small = await buyer(
        shop, "sort-small", name="小额客", total="120.00", placed_at="2026-11-20T10:00:00+08:00"
    )
    big = await buyer(
        shop, "sort-big", name="大客户", total="12800.00", placed_at="2026-10-01T10:00:00+08:00"
    )
    await sign_in(browser_like, shop.api_key)

    async def listed() -> None:
        page = (await browser_like.get("/console/customers")).text
        assert "¥12,800.00" in page and "¥120.00" in page

    await eventually(listed, within=20)
    by_spend = (await browser_like.get("/console/customers", params={"sort": "-total_spent"})).text
    assert by_spend.index(big) < by_spend.index(small)
    assert "selected>排序: 消费金额从高到低" in by_spend
    by_last_order = (await browser_like.get("/console/customers", params={"sort": "-last_order_at"})).text
    assert by_last_order.index(small) < by_last_order.index(big)
    # The column headers sort the same list: its filters kept, from the first page.
    stale = await browser_like.get("/console/customers", params={"sort": "-total_spent", "cursor": "abc"})
    assert stale.status_code == 400 and "cursor" in stale.text  # not a cursor of ours: said so, not a 500
    headers = (await browser_like.get("/console/customers", params={"lifecycle": "new"})).text
    assert 'href="?lifecycle=new&amp;sort=-total_spent"' in headers
    assert "重要价值" in headers and ">important_value<" not in headers  # the classes by their names


async def test_form_errors_are_shown_next_to_their_fields(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    # A higher tier that gives a bigger discount is refused by the programme's rules.
    rising = {
        "earn_rate": "1",
        "daily_points": "5",
        "tier_level_0": "1",
        "tier_name_0": "普通会员",
        "tier_discount_0": "98",
        "tier_level_1": "2",
        "tier_name_1": "金卡",
        "tier_min_spend_1": "1000",
        "tier_discount_1": "100",
    }
    refused = await browser_like.post("/console/loyalty", data=rising)
    assert refused.status_code == 422
    assert 'data-field="tiers"' in refused.text and "等级越高，折扣越大" in refused.text
    fixed = await browser_like.post("/console/loyalty", data={**rising, "tier_discount_1": "95"})
    assert fixed.status_code == 303 and fixed.headers["location"] == "/console/loyalty?saved=tiers"
    program = (await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())).json()
    assert [(t["name"], t["discount"]) for t in program["tiers"]] == [("普通会员", 98), ("金卡", 95)]
    # Perks (会员权益): typed with Chinese commas, shown again, and kept by a save that does not touch them.
    perks = {**rising, "tier_discount_1": "95", "tier_perks_1": "包邮，生日双倍积分、专属客服"}
    with_perks = await browser_like.post("/console/loyalty", data=perks)
    assert with_perks.headers["location"] == "/console/loyalty?saved=1"  # perks move nobody
    program = (await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())).json()
    assert program["tiers"][1]["perks"] == ["包邮", "生日双倍积分", "专属客服"]
    shown = (await browser_like.get("/console/loyalty")).text
    assert 'value="包邮，生日双倍积分，专属客服"' in shown
    placing = await browser_like.get("/console/loyalty?saved=tiers")
    assert "已保存。 正在按新的等级规则为现有会员定级" in placing.text
    assert "<th>名称</th>" in placing.text and "姓名" not in placing.text  # a tier's name, not a person's
    assert "<th>姓名</th>" in (await browser_like.get("/console/customers")).text
    # The same tiers again: saved, nobody to place.
    again = await browser_like.post("/console/loyalty", data=perks)
    assert again.headers["location"] == "/console/loyalty?saved=1"

    bad_rule = await browser_like.post(
        "/console/segments",
        data={"name": "x", "combine": "all", "field_0": "orders_count", "op_0": "gte", "value_0": "many"},
    )
    assert bad_rule.status_code == 422 and "应为整数，而不是 &#39;many&#39;" in bad_rule.text, bad_rule.text[
        -3000:
    ]
    made = await browser_like.post(
        "/console/segments",
        data={
            "name": "沉睡老客",
            "combine": "all",
            "field_0": "lifecycle",
            "op_0": "eq",
            "value_0": "沉睡",  # as the page shows it
            "field_1": "orders_count",
            "op_1": "gte",
            "value_1": "1",
        },
    )
    assert made.status_code == 303 and made.headers["location"].startswith("/console/segments/seg_")
    segment_page = (await browser_like.get(made.headers["location"])).text
    assert "沉睡老客" in segment_page and "规则: 生命周期 等于 沉睡 且 订单数 大于等于 1" in segment_page
    segment_id = made.headers["location"].rsplit("/", 1)[1]
    # Edited in the builder it was made in: the rule's rows come back filled, and a save replaces it.
    editing = (await browser_like.get(f"/console/segments/{segment_id}/edit")).text
    assert "编辑人群" in editing and f'action="/console/segments/{segment_id}"' in editing
    assert 'value="沉睡老客"' in editing
    refused = await browser_like.post(
        f"/console/segments/{segment_id}",
        data={"name": "沉睡老客", "combine": "all", "field_0": "orders_count", "op_0": "gte", "value_0": "x"},
    )
    assert refused.status_code == 422 and f'action="/console/segments/{segment_id}"' in refused.text
    edited = await browser_like.post(
        f"/console/segments/{segment_id}",
        data={
            "name": "沉睡老客（两单以上）",
            "combine": "all",
            "field_0": "lifecycle",
            "op_0": "eq",
            "value_0": "沉睡",
            "field_1": "orders_count",
            "op_1": "gte",
            "value_1": "2",
        },
    )
    assert edited.status_code == 303 and edited.headers["location"] == f"/console/segments/{segment_id}"
    saved = (await shop.client.get(f"/api/v1/segments/{segment_id}", headers=shop.headers())).json()
    assert saved["name"] == "沉睡老客（两单以上）" and saved["rule"]["all"][1]["value"] == 2
    # Its top spenders, and the way to all of them in the customer list.
    assert "人群中消费最多的客户" in segment_page
    assert f'href="/console/customers?segment_id={segment_id}&amp;sort=-total_spent"' in segment_page
    assert 'id="segment-edit"' in segment_page and 'id="segment-delete"' in segment_page
    other = await shop.client.post(
        "/api/v1/segments",
        json={"name": "临时", "rule": {"field": "orders_count", "op": "gte", "value": 1}},
        headers=shop.headers(),
    )
    for _ in range(2):  # the second as from a stale tab
        gone = await browser_like.post(f"/console/segments/{other.json()['id']}/delete")
        assert gone.status_code == 303 and gone.headers["location"] == "/console/segments"
    assert (
        await shop.client.get(f"/api/v1/segments/{other.json()['id']}", headers=shop.headers())
    ).status_code == 404
    assert "<h2>性别</h2>" in segment_page and '"label": "\\u5ba2\\u6237"' in segment_page  # 客户
    empty = await browser_like.post(
        "/console/campaigns", data={"name": "", "channel": "inapp", "holdout_percent": "5"}
    )
    assert empty.status_code == 422 and 'data-field="name"' in empty.text
    # The validator's own words are shown in the page's language.
    assert "不能为空" in empty.text and "String should have" not in empty.text


async def test_points_expiry_is_chosen_on_the_loyalty_page_and_kept_by_other_edits(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    program = (await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())).json()
    program["expiry"] = {"mode": "annual", "month": 12, "day": 31, "notice_days": 15}  # 积分每年清零
    put = await shop.client.put("/api/v1/loyalty/program", json=program, headers=shop.headers())
    assert put.status_code == 200, put.text
    await sign_in(browser_like, shop.api_key)
    page = (await browser_like.get("/console/loyalty")).text
    assert 'value="annual" checked' in page and 'id="expiry-month"' in page

    async def expiry() -> dict[str, object]:
        got = await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())
        return dict(got.json()["expiry"])

    # The page sends what it shows: another edit keeps the yearly reset (it used to become "never").
    form = {
        "earn_rate": "2",
        "daily_points": "5",
        "expiry_mode": "annual",
        "expiry_month": "12",
        "expiry_day": "31",
        "expiry_notice_days": "15",
    }
    assert (await browser_like.post("/console/loyalty", data=form)).status_code == 303
    assert await expiry() == {"mode": "annual", "days": None, "month": 12, "day": 31, "notice_days": 15}
    rolling = form | {"expiry_mode": "rolling", "expiry_days": "365"}  # the annual fields are left out
    assert (await browser_like.post("/console/loyalty", data=rolling)).status_code == 303
    assert await expiry() == {"mode": "rolling", "days": 365, "month": None, "day": None, "notice_days": 15}
    refused = await browser_like.post(
        "/console/loyalty", data=form | {"expiry_month": "2", "expiry_day": "30"}
    )
    assert refused.status_code == 422 and 'data-field="expiry"' in refused.text
    assert (await expiry())["mode"] == "rolling"
    never = form | {"expiry_mode": "none"}
    assert (await browser_like.post("/console/loyalty", data=never)).status_code == 303
    assert (await expiry())["mode"] == "none"

    # 连续签到奖励, typed with a Chinese colon and comma, shown again as days:points.
    streaks = never | {"streak_bonuses": "7：20，30:100"}
    assert (await browser_like.post("/console/loyalty", data=streaks)).status_code == 303
    signin = (await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())).json()["signin"]
    assert signin["streak_bonuses"] == [{"days": 7, "points": 20}, {"days": 30, "points": 100}]
    assert 'value="7:20, 30:100"' in (await browser_like.get("/console/loyalty")).text
    unreadable = await browser_like.post("/console/loyalty", data=never | {"streak_bonuses": "七天送二十"})
    assert unreadable.status_code == 422 and 'data-field="signin"' in unreadable.text
    assert 'value="七天送二十"' in unreadable.text  # as typed


def change_box(page: str) -> dict[str, Any]:
    """What an activity page's change box holds, as the shop owner would edit it."""
    return dict(
        json.loads(
            html.unescape(page.split('<textarea name="body"')[1].split(">", 1)[1].split("</textarea>")[0])
        )
    )


async def test_activities_are_made_with_a_form_of_their_type(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    page = (await browser_like.get("/console/activities")).text
    assert '<option value="survey" >问卷</option>' in page and 'name="per_member_limit" value="1"' in page
    survey = {
        "type": "survey",
        "title": "肤质调查",
        "starts_at": "2026-12-20T00:00",
        "ends_at": "2027-01-20T00:00",
        "questions": "skin: 您的肤质？ = 干 / 油 / 混合\n* 想要的新品 = 面霜 / 精华\n给我们的建议",
        "slots": "left from choosing grab first: not sent",
        "reward_points": "20",
        "per_member_limit": "1",
        "go_live": "1",
    }
    made = await browser_like.post("/console/activities", data=survey)
    assert made.status_code == 303 and made.headers["location"].startswith("/console/activities/act_")
    api = await shop.client.get(
        f"/api/v1{made.headers['location'].removeprefix('/console')}", headers=shop.headers()
    )
    created = api.json()
    assert (created["status"], created["starts_at"][:19], created["rules"]["reward_points"]) == (
        "live",
        "2026-12-19T16:00:00",
        20,
    )
    assert [(q["id"], q["kind"], q["options"]) for q in created["rules"]["questions"]] == [
        ("skin", "single", ["干", "油", "混合"]),
        ("q2", "multiple", ["面霜", "精华"]),
        ("q3", "text", []),
    ]
    assert created["rules"]["slots"] == []

    # What cannot be read is said by its box, the rest kept as typed; so is what the API refuses.
    grab = {**survey, "type": "grab", "title": "双十二抢积分", "slots": "十点", "slot_stock": "100"}
    unreadable = await browser_like.post("/console/activities", data=grab)
    assert unreadable.status_code == 422 and 'data-field="slots"' in unreadable.text
    assert "场次请写成 10:00-10:10" in unreadable.text and 'value="双十二抢积分"' in unreadable.text
    for typed, field, said in (
        ({"slots": "10:00-10:10", "reward_points": "二十"}, "reward_points", "应为整数"),
        ({"slots": "10:00-10:10", "ends_at": "2026-12-01T00:00"}, "_", "ends_at must come after starts_at"),
        ({"slots": "10:00-10:10", "segment_id": "seg_gone"}, "segment_id", "人群 seg_gone 不存在"),
    ):
        refused = await browser_like.post("/console/activities", data={**grab, **typed})
        assert refused.status_code == 422 and f'data-field="{field}"' in refused.text, (
            typed,
            refused.text[-3000:],
        )
        assert said in refused.text, typed
    listed = (await shop.client.get("/api/v1/activities", headers=shop.headers())).json()["items"]
    assert [a["title"] for a in listed] == ["肤质调查"]

    # Who took part is on the activity's page, newest first, an option by its label.
    now = datetime.now(UTC)
    vote = {
        "type": "vote",
        "title": "新品投票",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "status": "live",
        "reward_points": 3,
        "options": [{"id": "green", "label": "龙井"}, {"id": "black", "label": "正山小种"}],
    }
    vote_id = (await shop.client.post("/api/v1/activities", json=vote, headers=shop.headers())).json()["id"]
    for customer, option in (("cus_v1", "green"), ("cus_v2", "black")):
        took_part = await shop.client.post(
            f"/api/v1/activities/{vote_id}/participations",
            json={"customer_id": customer, "option": option},
            headers=shop.headers(),
        )
        assert took_part.status_code == 201, took_part.text
    page = (await browser_like.get(f"/console/activities/{vote_id}")).text
    rows = page[page.find('id="participations"') :]
    assert rows.find('href="/console/customers/cus_v2"') < rows.find('href="/console/customers/cus_v1"')
    assert "正山小种" in rows and "龙井" in rows and "已奖励" in rows and "+3" in rows

    # Thirty a page, each with its figures; the older ones a click away.
    for n in range(29):
        body = {**JSON_EXAMPLE, "title": f"收藏有礼 {n}"}
        assert (
            await shop.client.post("/api/v1/activities", json=body, headers=shop.headers())
        ).status_code == 201
    page = await browser_like.get("/console/activities")
    assert "收藏有礼 28" in page.text and "肤质调查" not in page.text
    next_page = html.unescape(page.text.split('id="next-page"')[0].rsplit('href="', 1)[1].split('"')[0])
    older = await browser_like.get(f"/console/activities{next_page}")
    assert "肤质调查" in older.text and "收藏有礼 28" not in older.text and 'id="next-page"' not in older.text


async def test_loyalty_objects_are_created_and_segments_exported(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    page = await browser_like.get("/console/loyalty")
    # Coupon templates, rewards and lotteries have forms in the page's words.
    assert '<option value="spend_save" selected>满减</option>' in page.text and "中奖率 (%)" in page.text
    made = await browser_like.post(
        "/console/loyalty/coupon_templates",
        data={
            "name": "无门槛10元",
            "kind": "no_threshold",
            "amount": "10",
            "valid_days": "7",
            "threshold": "",
        },
    )
    assert made.status_code == 303, made.text
    listed = (await browser_like.get("/console/loyalty")).text
    assert "无门槛10元" in listed
    assert '<td class="coupon-terms">无门槛减10<small>领取后 7 天有效</small>' in listed
    templates = (await shop.client.get("/api/v1/coupons/templates", headers=shop.headers())).json()["items"]
    assert [(t["kind"], t["amount"], t["valid_days"], t["threshold"]) for t in templates] == [
        ("no_threshold", "10.00", 7, None)
    ]
    # Its terms corrected from its row while none is issued: 无门槛 made 满100减10 for 14 days.
    terms_url = f"/console/loyalty/coupon_templates/{templates[0]['id']}/terms"
    assert f'action="{terms_url}"' in listed
    corrected = await browser_like.post(
        terms_url,
        data={
            "kind": "spend_save",
            "threshold": "100",
            "amount": "10",
            "percent_off": "",
            "valid_days": "14",
        },
    )
    assert corrected.status_code == 303, corrected.text
    template_url = f"/api/v1/coupons/templates/{templates[0]['id']}"
    stored = (await shop.client.get(template_url, headers=shop.headers())).json()
    assert (stored["kind"], stored["threshold"], stored["amount"], stored["valid_days"]) == (
        "spend_save",
        "100.00",
        "10.00",
        14,
    )
    upside_down = await browser_like.post(
        terms_url, data={"kind": "spend_save", "threshold": "5", "amount": "10", "valid_days": "14"}
    )
    assert upside_down.status_code == 422 and "满减券的门槛须高于减免金额" in upside_down.text
    # Once one is issued, the row offers no change of terms, and a form sent from an older page is refused.
    await shop.client.post("/api/v1/loyalty/members/cus_terms_holder/signin", headers=shop.headers())
    issued = await shop.client.post(
        f"{template_url}/issue", json={"customer_ids": ["cus_terms_holder"]}, headers=shop.headers()
    )
    assert issued.json()["issued"] == 1, issued.text
    assert f'action="{terms_url}"' not in (await browser_like.get("/console/loyalty")).text
    late = await browser_like.post(terms_url, data={"kind": "spend_save", "threshold": "200", "amount": "10"})
    assert late.status_code == 422 and "1 coupons of this template are issued" in late.text
    # A lottery: its prizes are rows, each chance in percent, points or a coupon; a refusal keeps the rows.
    lottery = {
        "name": "签到抽奖",
        "cost_points": "20",
        "free_draws_per_day": "1",
        "prize_name_0": "50 积分",
        "prize_percent_0": "12.5",
        "prize_points_0": "50",
        "prize_name_1": "无门槛券",
        "prize_percent_1": "5",
        "prize_coupon_template_id_1": templates[0]["id"],
        "prize_stock_1": "3",
        "prize_percent_2": "30",  # a row without a name is no prize
    }
    too_likely = await browser_like.post(
        "/console/loyalty/lotteries", data={**lottery, "prize_percent_1": "90"}
    )
    assert too_likely.status_code == 422 and 'data-field="lotteries"' in too_likely.text
    assert "各奖品中奖率合计超过 100%" in too_likely.text and 'value="12.5"' in too_likely.text
    assert (await browser_like.post("/console/loyalty/lotteries", data=lottery)).status_code == 303
    [made_lottery] = (await shop.client.get("/api/v1/loyalty/lotteries", headers=shop.headers())).json()[
        "items"
    ]
    assert [
        (p["name"], Decimal(p["probability"]), p["points"], p["stock"]) for p in made_lottery["prizes"]
    ] == [
        ("50 积分", Decimal("0.125"), 50, None),
        ("无门槛券", Decimal("0.05"), None, 3),
    ]
    # Stopped from its row (draws refused), its budget set; a budget below what was paid is said there.
    lottery_url = f"/console/loyalty/lotteries/{made_lottery['id']}"
    stopped = await browser_like.post(lottery_url, data={"active": "false", "points_budget": "1000"})
    assert stopped.status_code == 303
    now = (
        await shop.client.get(f"/api/v1/loyalty/lotteries/{made_lottery['id']}", headers=shop.headers())
    ).json()
    assert (now["active"], now["points_budget"]) == (False, 1000)
    assert "已停止" in (await browser_like.get("/console/loyalty")).text
    unlimited = await browser_like.post(lottery_url, data={"active": "true", "points_budget": "-1"})
    assert unlimited.status_code == 422 and 'data-field="lottery"' in unlimited.text
    # Big counts read by their thousands, as sums do.
    adjustment = {"points": 12000, "reason": "老客回馈"}
    adjusted = await shop.client.post(
        "/api/v1/loyalty/members/cus_terms_holder/adjustments", json=adjustment, headers=shop.headers()
    )
    assert adjusted.status_code == 201, adjusted.text
    charts = (await browser_like.get("/console/overview/charts")).text
    assert "<td>12,005</td>" in charts, charts[charts.find("积分负债") :]  # with the sign-in's 5
    refused = await browser_like.post("/console/loyalty/rewards", data={"name": "茶杯x", "kind": "gift"})
    assert refused.status_code == 422 and 'data-field="rewards"' in refused.text
    assert "points_cost: 必填" in refused.text and 'value="茶杯x"' in refused.text  # what was typed stays
    coupon_reward = await browser_like.post(
        "/console/loyalty/rewards",
        data={
            "name": "兑换10元券",
            "kind": "coupon",
            "points_cost": "300",
            "coupon_template_id": templates[0]["id"],
            "stock": "",
        },
    )
    assert coupon_reward.status_code == 303, coupon_reward.text
    rewards = (await shop.client.get("/api/v1/loyalty/rewards", headers=shop.headers())).json()["items"]
    assert [(r["name"], r["kind"], r["points_cost"], r["stock"]) for r in rewards] == [
        ("兑换10元券", "coupon", 300, None)
    ]
    # Restocked and taken off sale (下架) from its row, then back on sale with no stock limit.
    reward_url = f"/console/loyalty/rewards/{rewards[0]['id']}"
    assert (await browser_like.post(reward_url, data={"stock": "50", "active": "false"})).status_code == 303
    reward = (
        await shop.client.get(f"/api/v1/loyalty/rewards/{rewards[0]['id']}", headers=shop.headers())
    ).json()
    assert (reward["stock"], reward["active"]) == (50, False)
    assert '<option value="false" selected>下架</option>' in (await browser_like.get("/console/loyalty")).text
    assert (await browser_like.post(reward_url, data={"stock": "", "active": "true"})).status_code == 303
    reward = (
        await shop.client.get(f"/api/v1/loyalty/rewards/{rewards[0]['id']}", headers=shop.headers())
    ).json()
    assert (reward["stock"], reward["active"]) == (None, True)
    negative = await browser_like.post(reward_url, data={"stock": "-3", "active": "true"})
    assert (
        negative.status_code == 422
        and 'data-field="reward"' in negative.text
        and "应不小于 0" in negative.text
    )

    activity = (
        '{"type": "favorite_shop", "title": "收藏有礼", "starts_at": "2026-01-01T00:00:00+08:00", '
        '"ends_at": "2027-01-01T00:00:00+08:00", "status": "live", "reward_points": 10}'
    )
    assert (await browser_like.post("/console/activities", data={"body": activity})).status_code == 303
    assert "收藏有礼" in (await browser_like.get("/console/activities")).text
    listed = (await shop.client.get("/api/v1/activities", headers=shop.headers())).json()["items"]
    activity_url = f"/console/activities/{listed[0]['id']}"
    page = (await browser_like.get(activity_url)).text
    assert ">结束</button>" in page  # a live one ends
    # Its rules are on its page, on the shop's clock; its change box offers what may change while live.
    assert "2026-01-01 00:00 – 2027-01-01 00:00" in page and "10 积分" in page and "全部会员" in page
    live_box = change_box(page)
    assert set(live_box) == {"title", "description", "ends_at", "budget_points", "stock", "eligibility"}
    assert live_box["ends_at"] == "2027-01-01T00:00:00+08:00"
    refused = await browser_like.post(f"{activity_url}/edit", data={"body": '{"reward_points": 20}'})
    assert refused.status_code == 422 and "reward_points 只能在活动为草稿时修改" in refused.text
    assert '{"reward_points": 20}' in html.unescape(refused.text)  # the box as typed, to correct
    nowhere = await browser_like.post(
        f"{activity_url}/edit", data={"body": '{"eligibility": {"segment_id": "seg_x"}}'}
    )
    assert nowhere.status_code == 422 and "人群 seg_x 不存在" in nowhere.text
    widened = await browser_like.post(
        f"{activity_url}/edit", data={"body": '{"stock": 50, "title": "收藏送积分"}'}
    )
    assert widened.headers["location"] == activity_url
    page = (await browser_like.get(activity_url)).text
    assert "收藏送积分" in page and "0 / 50" in page
    broken = await browser_like.post(f"{activity_url}/edit", data={"body": '{"stock": 5'})
    assert broken.status_code == 422 and "not valid JSON" in broken.text
    # A draft's box holds its whole definition, times on the shop's clock: corrected and saved back.
    survey = {
        "type": "survey",
        "title": "肤质调查",
        "starts_at": "2026-12-20T00:00:00+08:00",
        "ends_at": "2027-01-20T00:00:00+08:00",
        "reward_points": 5,
        "questions": [{"id": "skin", "text": "您的肤质", "options": ["干", "油"]}],
    }
    draft = (await shop.client.post("/api/v1/activities", json=survey, headers=shop.headers())).json()
    draft_url = f"/console/activities/{draft['id']}"
    page = (await browser_like.get(draft_url)).text
    box = change_box(page)
    assert box["starts_at"] == "2026-12-20T00:00:00+08:00" and "type" not in box
    box["questions"][0]["options"].append("混合")
    box["starts_at"] = "2026-12-18T09:00:00+08:00"
    saved = await browser_like.post(f"{draft_url}/edit", data={"body": json.dumps(box, ensure_ascii=False)})
    assert saved.headers["location"] == draft_url
    page = (await browser_like.get(draft_url)).text
    assert "2026-12-18 09:00 – 2027-01-20 00:00" in page and "干 / 油 / 混合" in page
    ended = await browser_like.post(f"{activity_url}/status", data={"status": "ended"})
    assert ended.headers["location"] == activity_url
    # Launched from a page that still showed it before it ended (another tab): said, not swallowed.
    again = await browser_like.post(f"{activity_url}/status", data={"status": "live"})
    assert "error=" in again.headers["location"]
    shown = (await browser_like.get(again.headers["location"])).text
    assert "活动已结束，不能再更改" in shown, shown[shown.find("<h1") :][:600]

    settings = await browser_like.get("/console/settings")
    assert f"/api/v1/webhooks/taobao/{shop.shop_id}" in settings.text
    tmall = f"/api/v1/webhooks/taobao/{shop.shop_id}?channel=tmall</code>"
    assert "<td>天猫</td>" in settings.text and tmall in settings.text

    for n in range(3):
        await buyer(shop, f"export-{n}", name=f"导出{n}")
    made = await browser_like.post(
        "/console/segments",
        data={"name": "全部", "combine": "all", "field_0": "orders_count", "op_0": "gte", "value_0": "1"},
    )
    segment = made.headers["location"].rsplit("/", 1)[1]

    async def exported() -> str:
        csv = await browser_like.get(f"/console/segments/{segment}/export.csv")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert csv.content.startswith("\ufeff".encode())
        assert len(csv.text.strip().splitlines()) == 1 + 3, csv.text
        return csv.text

    text = await eventually(exported, within=20)
    # For a spreadsheet: the page's language, the shop's clock (buyers ordered 2026-11-01 10:00 in Shanghai).
    assert (
        text.splitlines()[0].lstrip("\ufeff")
        == "客户 ID,姓名,昵称,手机,生命周期,RFM 分类,等级,订单数,消费金额,最近下单"
    )
    assert text.splitlines()[1].endswith(",新客,一般发展,,1,100.00,2026-11-01 10:00"), text

    # The customer list as filtered and sorted on its page, from the same link's query.
    listed = (await browser_like.get("/console/customers", params={"q": "导出1"})).text
    assert 'href="/console/customers/export.csv?q=%E5%AF%BC%E5%87%BA1"' in listed
    one = await browser_like.get("/console/customers/export.csv", params={"q": "导出1"})
    assert (
        one.status_code == 200
        and one.headers["content-disposition"] == 'attachment; filename="customers.csv"'
    )
    lines = one.text.lstrip("\ufeff").splitlines()
    assert len(lines) == 2 and lines[1].split(",")[2] == "导出1", one.text  # its nick
    buyers = await browser_like.get(
        "/console/customers/export.csv", params={"lifecycle": "new", "sort": "-total_spent"}
    )
    assert len(buyers.text.strip().splitlines()) == 1 + 3, buyers.text  # not the member who only signed in
    refused = await browser_like.get("/console/customers/export.csv", params={"sort": "by_mood"})
    assert refused.status_code == 422 and not refused.headers["content-type"].startswith("text/csv")


async def test_points_are_adjusted_and_a_coupon_given_from_a_customers_page(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    key = shop.headers()
    customer = await buyer(shop, "service-buyer", name="钱七", total="100.00")

    async def member() -> int:
        answer = await shop.client.get(f"/api/v1/loyalty/members/{customer}", headers=key)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["points_available"])

    before = await eventually(member, within=20)
    await sign_in(browser_like, shop.api_key)
    page_url = f"/console/customers/{customer}"
    assert 'id="points-form"' in (await browser_like.get(page_url)).text

    # 客服补偿: booked once, however often the same form is sent.
    form = {"points": "＋200", "reason": "客服补偿: 物流延误", "request_key": "console_form_1"}
    for _ in range(2):
        booked = await browser_like.post(f"{page_url}/points", data=form)
        assert booked.status_code == 303 and booked.headers["location"] == f"{page_url}?done=points#ledger"
    assert await member() == before + 200
    after = (await browser_like.get(f"{page_url}?done=points")).text
    assert "积分已记入" in after and "客服补偿: 物流延误" in after and "人工调整" in after
    # Refused: said in the page's words, next to the field, with what was typed kept.
    too_many = await browser_like.post(
        f"{page_url}/points", data={"points": "-999999", "reason": "扣回", "request_key": "console_form_2"}
    )
    assert too_many.status_code == 422 and f"积分不足：现有 {before + 200}，需要 999999" in too_many.text
    assert 'value="-999999"' in too_many.text
    words = await browser_like.post(f"{page_url}/points", data={"points": "两百", "reason": "x"})
    assert words.status_code == 422 and 'data-field="points_points">应为整数' in words.text
    no_reason = await browser_like.post(f"{page_url}/points", data={"points": "5", "reason": ""})
    assert no_reason.status_code == 422 and 'data-field="points_reason">不能为空' in no_reason.text
    assert await member() == before + 200

    # A coupon for this customer; a second one is beyond what one customer may hold.
    template = await shop.client.post(
        "/api/v1/coupons/templates",
        json={"name": "老客专享10元券", "kind": "no_threshold", "amount": "10", "per_customer_limit": 1},
        headers=key,
    )
    template_id = template.json()["id"]
    assert "老客专享10元券" in (await browser_like.get(page_url)).text
    given = await browser_like.post(f"{page_url}/coupons", data={"template_id": template_id})
    assert given.status_code == 303 and given.headers["location"] == f"{page_url}?done=coupon#coupons"
    held = await shop.client.get(f"/api/v1/loyalty/members/{customer}/coupons", headers=key)
    assert [c["template_id"] for c in held.json()["items"]] == [template_id]
    again = await browser_like.post(f"{page_url}/coupons", data={"template_id": template_id})
    assert again.status_code == 422 and "已达到该券的每人限领数量" in again.text
    unchosen = await browser_like.post(f"{page_url}/coupons", data={"template_id": ""})
    assert unchosen.status_code == 422 and "请选择优惠券模板" in unchosen.text


async def test_a_campaign_is_scheduled_on_the_shops_clock_and_a_refused_form_keeps_its_choices(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    empty = (await browser_like.get("/console/campaigns/new")).text
    assert 'id="no-segments"' in empty and 'id="no-templates"' in empty  # what to do first, said
    await buyer(shop, "scheduled-buyer")
    segment = await segment_of_everyone(shop, 1)
    body = await template(shop, "inapp", "{{ name }}，双11 老客专享")
    coupon = await shop.client.post(
        "/api/v1/coupons/templates",
        json={"name": "双11 无门槛10元", "kind": "no_threshold", "amount": "10"},
        headers=shop.headers(),
    )
    coupon_id = coupon.json()["id"]
    form = {
        "name": "双11 老客回购",
        "segment_id": segment,
        "channel": "inapp",
        "template_id": body,
        "coupon_template_id": coupon_id,
        "holdout_percent": "200",  # refused
        "schedule_at": "2026-11-11T20:00",
    }
    refused = await browser_like.post("/console/campaigns", data=form)
    assert refused.status_code == 422 and 'data-field="holdout_percent"' in refused.text
    # What was chosen stays chosen: sent again as it stands, the coupon is not silently dropped.
    assert f'<option value="{coupon_id}" selected>' in refused.text
    assert 'value="2026-11-11T20:00"' in refused.text
    made = await browser_like.post("/console/campaigns", data=form | {"holdout_percent": "10"})
    assert made.status_code == 303
    campaign_id = made.headers["location"].rsplit("/", 1)[1]
    campaign = await shop.client.get(f"/api/v1/campaigns/{campaign_id}", headers=shop.headers())
    # 20:00 in Shanghai is 12:00 UTC.
    assert campaign.json()["schedule_at"] == "2026-11-11T12:00:00Z"
    assert campaign.json()["coupon_template_id"] == coupon_id
    page = (await browser_like.get(made.headers["location"])).text
    assert 'id="campaign-schedule-at">2026-11-11 20:00<' in page
    nonsense = await browser_like.post("/console/campaigns", data=form | {"schedule_at": "明天"})
    assert nonsense.status_code == 422 and 'data-field="schedule_at"' in nonsense.text


async def test_coupon_flags_and_the_gifts_to_send_show_on_the_loyalty_page(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    # A coupon used by somebody else on a small order: the template's row says what went wrong.
    key = shop.headers()
    template_id = (
        await shop.client.post(
            "/api/v1/coupons/templates",
            json={"name": "满300减30", "kind": "spend_save", "threshold": "300", "amount": "30"},
            headers=key,
        )
    ).json()["id"]
    await shop.client.post("/api/v1/loyalty/members/cus_holder/signin", headers=key)
    issued = await shop.client.post(
        f"/api/v1/coupons/templates/{template_id}/issue", json={"customer_ids": ["cus_holder"]}, headers=key
    )
    order = order_json(
        "FLAG-1", buyer="coupon-borrower", total="120.00", coupon_codes=[issued.json()["codes"]["cus_holder"]]
    )
    assert (await shop.client.post("/api/v1/orders", json=order, headers=key)).status_code == 201

    async def flagged() -> None:
        page = (await browser_like.get("/console/loyalty")).text
        assert '<th class="num">异常使用</th>' in page and "未满门槛 1, 非本人使用 1" in page

    await eventually(flagged, within=20)
    # A gift redeemed waits on the page until it is marked sent.
    await shop.client.post(
        "/api/v1/loyalty/members/cus_holder/adjustments", json={"points": 100, "reason": "测试"}, headers=key
    )
    cup = await shop.client.post(
        "/api/v1/loyalty/rewards", json={"name": "青瓷茶杯", "kind": "gift", "points_cost": 60}, headers=key
    )
    redeemed = await shop.client.post(
        "/api/v1/loyalty/members/cus_holder/redemptions", json={"reward_id": cup.json()["id"]}, headers=key
    )
    waiting = (await browser_like.get("/console/loyalty")).text
    # A member known only by sign-in shows by id; a buyer by name and city.
    assert "待发货的兑换礼品" in waiting and "青瓷茶杯" in waiting and "cus_holder" in waiting
    zhao = await buyer(shop, "gift-buyer", name="赵六", total="100.00")

    async def zhao_redeems() -> None:  # once loyalty and segmentation have taken the order in
        assert (await shop.client.get(f"/api/v1/customers/{zhao}", headers=key)).status_code == 200
        points = await shop.client.post(
            f"/api/v1/loyalty/members/{zhao}/adjustments", json={"points": 60, "reason": "测试"}, headers=key
        )
        assert points.status_code == 201, points.text

    await eventually(zhao_redeems, within=20)
    gift = await shop.client.post(
        f"/api/v1/loyalty/members/{zhao}/redemptions", json={"reward_id": cup.json()["id"]}, headers=key
    )
    assert gift.status_code == 201, gift.text

    async def named() -> None:
        assert "赵六" in (await browser_like.get("/console/loyalty")).text

    await eventually(named, within=20)
    redemption_id = redeemed.json()["id"]
    sent = await browser_like.post(
        f"/console/loyalty/redemptions/{redemption_id}", data={"status": "fulfilled", "note": "顺丰 SF100"}
    )
    assert sent.status_code == 303, sent.text
    assert (
        'action="/console/loyalty/redemptions/' + redemption_id
        not in (await browser_like.get("/console/loyalty")).text
    )
    settled = await shop.client.get(
        "/api/v1/loyalty/redemptions", params={"customer_id": "cus_holder"}, headers=key
    )
    assert [(r["status"], r["note"]) for r in settled.json()["items"]] == [("fulfilled", "顺丰 SF100")]
    again = await browser_like.post(
        f"/console/loyalty/redemptions/{redemption_id}", data={"status": "cancelled"}
    )
    assert again.status_code == 422 and 'data-field="redemptions"' in again.text


async def test_channels_are_configured_from_settings(
    browser_like: httpx.AsyncClient, shop: ShopClient, stack: ServerSet
) -> None:
    await sign_in(browser_like, shop.api_key)
    bad = await browser_like.post("/console/settings/channels/email", data={"body": '{"enabled": true}'})
    assert bad.status_code == 422 and 'data-field="channel_email"' in bad.text and "from_address" in bad.text
    good = '{"enabled": true, "from_address": "hello@shop.example", "from_name": "西湖茶庄"}'
    assert (
        await browser_like.post("/console/settings/channels/email", data={"body": good})
    ).status_code == 303
    channels = (await shop.client.get("/api/v1/messaging/channels", headers=shop.headers())).json()["items"]
    email = next(c for c in channels if c["channel"] == "email")
    assert email["configured"] and email["settings"]["from_address"] == "hello@shop.example"

    # The SMS box shows the secret masked; saved as shown with a new signature, the secret is kept
    # (it used to be stored as "********", and every SMS after it refused by the vendor).
    await configure_sms(shop)
    page = (await browser_like.get("/console/settings")).text
    shown = html.unescape(page.split('action="/console/settings/channels/sms"')[1].split("<textarea")[1])
    box = json.loads(shown.split(">", 1)[1].split("</textarea>")[0])
    assert box["access_key_secret"] == "********"
    resigned = json.dumps(box | {"sign_name": "老客茶铺"}, ensure_ascii=False)
    assert (
        await browser_like.post("/console/settings/channels/sms", data={"body": resigned})
    ).status_code == 303
    stored = await stack.scalar(
        "messaging",
        "SELECT settings FROM messaging.channel_configs WHERE shop_id = :s AND channel = 'sms'",
        s=shop.shop_id,
    )
    assert stored["sign_name"] == "老客茶铺" and stored["access_key_secret"] == LOCAL_ACCESS_KEY_SECRET


async def test_keys_are_made_and_revoked_from_settings(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    made = await browser_like.post("/console/settings/keys", data={"name": "只读报表", "scope_read": "on"})
    assert made.status_code == 200 and 'id="new-key"' in made.text
    keys = (await shop.client.get("/api/v1/keys", headers=shop.headers())).json()["items"]
    new = next(k for k in keys if k["name"] == "只读报表")
    assert new["scopes"] == ["read"]
    assert (await browser_like.post(f"/console/settings/keys/{new['id']}/revoke")).status_code == 303
    keys = (await shop.client.get("/api/v1/keys", headers=shop.headers())).json()["items"]
    assert next(k for k in keys if k["id"] == new["id"])["revoked_at"] is not None
    listed = (await browser_like.get("/console/settings")).text
    assert "<td>只读报表</td><td>read</td><td>已撤销</td>" in listed
    nameless = await browser_like.post("/console/settings/keys", data={"name": "", "scope_read": "on"})
    assert nameless.status_code == 422


async def test_automations_read_in_chinese_and_save_the_api_values(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    page = (await browser_like.get("/console/automations")).text
    assert "催付提醒" in page and "付款或关闭后自动取消" in page and "unpaid_reminder</b>" not in page
    assert '<option value="sms" >短信</option>' in page
    unchosen = await browser_like.post(
        "/console/automations/unpaid_reminder",
        data={"channel": "sms", "template_id": "", "delay_minutes": "45"},
    )
    assert unchosen.status_code == 303 and "error=" in unchosen.headers["location"]
    shown = (await browser_like.get(unchosen.headers["location"])).text
    assert "催付提醒: 请先选择模板" in shown
    template = await shop.client.post(
        "/api/v1/templates",
        json={"name": "催付", "channel": "sms", "body": "{{ name }}您好，您的订单还未付款"},
        headers=shop.headers(),
    )
    assert template.status_code == 201, template.text
    saved = await browser_like.post(
        "/console/automations/unpaid_reminder",
        data={"enabled": "on", "channel": "sms", "template_id": template.json()["id"], "delay_minutes": "45"},
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/console/automations"
    listed = (await shop.client.get("/api/v1/automations", headers=shop.headers())).json()["items"]
    reminder = next(a for a in listed if a["kind"] == "unpaid_reminder")
    assert (reminder["channel"], reminder["delay_minutes"], reminder["enabled"]) == ("sms", 45, True)

    # A win-back with its coupon: chosen on the page, shown chosen, kept when the page saves again.
    coupon = await shop.client.post(
        "/api/v1/coupons/templates",
        json={"name": "回归礼5元", "kind": "no_threshold", "amount": "5"},
        headers=shop.headers(),
    )
    winback = {
        "enabled": "on",
        "channel": "sms",
        "template_id": template.json()["id"],
        "delay_minutes": "0",
        "coupon_template_id": coupon.json()["id"],
    }
    assert (await browser_like.post("/console/automations/winback", data=winback)).status_code == 303
    page = (await browser_like.get("/console/automations")).text
    assert f'<option value="{coupon.json()["id"]}" selected>回归礼5元</option>' in page
    turned_off = {k: v for k, v in winback.items() if k != "enabled"}
    assert (await browser_like.post("/console/automations/winback", data=turned_off)).status_code == 303
    listed = (await shop.client.get("/api/v1/automations", headers=shop.headers())).json()["items"]
    kept = next(a for a in listed if a["kind"] == "winback")
    assert (kept["enabled"], kept["coupon_template_id"]) == (False, coupon.json()["id"])
    # A delay that is not a number is refused with the API's word, not read as the default.
    bad = await browser_like.post("/console/automations/winback", data=winback | {"delay_minutes": "-5"})
    assert "error=" in bad.headers["location"]
    assert "应不小于 0" in (await browser_like.get(bad.headers["location"])).text


async def test_messaging_policy_and_rfm_preset_read_in_chinese_and_save(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    page = (await browser_like.get("/console/settings")).text
    assert "频次上限：每位客户最多" in page and '<option value="fast_moving" >快消' in page
    assert (
        await browser_like.post("/console/settings/rfm", data={"preset": "fast_moving"})
    ).status_code == 303
    config = (await shop.client.get("/api/v1/rfm/config", headers=shop.headers())).json()
    assert config["preset"] == "fast_moving"
    page = (await browser_like.get("/console/settings")).text
    assert '<option value="fast_moving" selected>快消' in page
    assert 'name="recency_days" value="7, 14, 30, 60"' in page  # the preset's thresholds, shown

    # The shop's own thresholds, typed as a shop owner types them (Chinese commas too).
    own = {
        "preset": "custom",
        "window_days": "365",
        "recency_days": "15，45，90，180",
        "frequency": "2, 4, 6, 10",
        "monetary": "200, 500, 1500.5, 5000",
        "active_days": "60",
        "sleeping_days": "150",
    }
    assert (await browser_like.post("/console/settings/rfm", data=own)).status_code == 303
    config = (await shop.client.get("/api/v1/rfm/config", headers=shop.headers())).json()
    assert (config["preset"], config["recency_days"], config["frequency"]) == (
        "custom",
        [15, 45, 90, 180],
        [2, 4, 6, 10],
    )
    assert config["monetary"] == ["200.00", "500.00", "1500.50", "5000.00"]
    assert (config["active_days"], config["sleeping_days"]) == (60, 150)
    page = (await browser_like.get("/console/settings")).text
    assert '<option value="custom" selected>自定义' in page and 'value="15, 45, 90, 180"' in page
    # Refused: shown next to the field, as typed, and nothing changed.
    falling = await browser_like.post("/console/settings/rfm", data=own | {"frequency": "5, 4, 3, 2"})
    assert falling.status_code == 422 and 'data-field="frequency"' in falling.text
    assert "四个阈值须逐个增大 (5, 4, 3, 2)" in falling.text
    overlap = await browser_like.post("/console/settings/rfm", data=own | {"sleeping_days": "30"})
    assert overlap.status_code == 422 and 'data-field="sleeping_days">须大于活跃天数' in overlap.text
    assert 'value="5, 4, 3, 2"' in falling.text
    words = await browser_like.post("/console/settings/rfm", data=own | {"window_days": "一年"})
    assert words.status_code == 422 and 'data-field="window_days"' in words.text
    config = (await shop.client.get("/api/v1/rfm/config", headers=shop.headers())).json()
    assert config["frequency"] == [2, 4, 6, 10] and config["window_days"] == 365


async def test_settings_show_the_refused_webhook_deliveries(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    assert (
        "暂无数据"
        in (await browser_like.get("/console/settings")).text.split('id="webhook-failures"')[1][:200]
    )
    forged = await shop.client.post(
        f"/api/v1/webhooks/generic/{shop.shop_id}",
        content=b'{"order_id": "W-1"}',
        headers={"Content-Type": "application/json", "X-Laoke-Signature": "t=1,v1=00"},
    )
    assert forged.status_code == 401
    listed = (await browser_like.get("/console/settings")).text.split('id="webhook-failures"')[1]
    assert "<td>generic</td><td>401</td>" in listed[:600], listed[:600]


async def test_a_dry_run_import_says_nothing_was_stored(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    csv = (
        "order_id,buyer_id,status,total_amount,placed_at\n"
        "DRY-1,dry-buyer,completed,10.00,2026-11-01T10:00:00+08:00\n"
    )
    made = await shop.client.post(
        "/api/v1/imports",
        files={"file": ("试导入.csv", csv.encode(), "text/csv")},
        data={"dry_run": "true"},
        headers=shop.headers(),
    )
    assert made.status_code == 202, made.text
    await sign_in(browser_like, shop.api_key)

    async def checked() -> None:
        page = (await browser_like.get(f"/console/imports/{made.json()['import_id']}")).text
        assert 'data-state="completed"' in page and "试导入：只检查和计数，没有保存任何数据。" in page

    await eventually(checked, within=20)


async def test_the_import_form_files_a_tmall_export_under_tmall_and_can_only_try(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    page = (await browser_like.get("/console/imports")).text
    assert '<option value="tmall">天猫</option>' in page and "试导入：只检查并统计，不入库" in page
    csv = (
        "订单编号,买家会员名,买家实际支付金额,订单状态,订单创建时间\n"
        "TM-1,天猫买家,88.00,交易成功,2026-11-01 10:00:00\n"
    ).encode("gb18030")

    async def upload(**fields: str) -> str:
        sent = await browser_like.post(
            "/console/imports", files={"file": ("天猫导出.csv", csv, "text/csv")}, data=fields
        )
        assert sent.status_code == 303, sent.text[-2000:]
        return str(sent.headers["location"].rsplit("/", 1)[1])

    async def finished(import_id: str) -> dict[str, object]:
        async def done() -> dict[str, object]:
            got = await shop.client.get(f"/api/v1/imports/{import_id}", headers=shop.headers())
            assert got.json()["status"] == "completed", got.text
            return dict(got.json())

        return await eventually(done, within=20)

    tried = await finished(await upload(channel="tmall", dry_run="true"))
    assert tried["dry_run"] is True and tried["rows_imported"] == 1
    lookup = {"channel": "tmall", "external_id": "天猫买家"}
    missing = await shop.client.get("/api/v1/customers/lookup", params=lookup, headers=shop.headers())
    assert missing.status_code == 404  # nothing stored by the try
    await finished(await upload(channel="tmall"))
    found = await shop.client.get("/api/v1/customers/lookup", params=lookup, headers=shop.headers())
    assert found.status_code == 200, found.text


async def test_a_profile_edit_sends_only_what_changed_and_never_a_masked_value(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    customer = await buyer(shop, "profile-edit", name="王小明", mobile="13800138000", total="99.00")

    await profiled(shop, customer, 1)
    named = await shop.client.patch(
        f"/api/v1/customers/{customer}", json={"name": "王小明"}, headers=shop.headers()
    )
    assert named.status_code == 200, named.text
    # A service desk key: it reads and writes, but sees contact data masked.
    desk = await shop.client.post(
        "/api/v1/keys", json={"name": "客服", "scopes": ["read", "write"]}, headers=shop.headers()
    )
    await sign_in(browser_like, desk.json()["api_key"])
    page = (await browser_like.get(f"/console/customers/{customer}")).text
    assert 'name="mobile" value="138****8000"' in page and 'name="name" value="王*"' in page
    # The form as shown, with only the gender chosen.
    form = {"name": "王*", "gender": "male", "mobile": "138****8000", "province": "", "city": ""}
    saved = await browser_like.post(f"/console/customers/{customer}", data=form)
    assert saved.status_code == 303, saved.text[-1500:]
    profile = (await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())).json()
    assert (profile["name"], profile["mobile"], profile["gender"]) == ("王小明", "13800138000", "male")
    # Only the gender joins the name as the shop's own: later orders still update the rest.
    assert profile["edited_fields"] == ["gender", "name"]


async def test_tags_are_added_and_removed_on_a_customers_page(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    customer = await buyer(shop, "tagged-buyer", name="孙八")

    await profiled(shop, customer, 1)
    await sign_in(browser_like, shop.api_key)
    page_url = f"/console/customers/{customer}"
    added = await browser_like.post(f"{page_url}/tags", data={"tags": "VIP，爱喝绿茶、 a/b 标签"})
    assert added.status_code == 303

    async def tags() -> list[str]:
        got = await shop.client.get(f"/api/v1/customers/{customer}", headers=shop.headers())
        return list(got.json()["tags"])

    assert sorted(await tags()) == sorted(["VIP", "爱喝绿茶", "a/b 标签"])
    assert "<span>爱喝绿茶</span>" in (await browser_like.get(page_url)).text
    # A tag with a slash in it is removed too (its name goes into the API's path).
    for _ in range(2):  # the second as from a stale tab
        removed = await browser_like.post(f"{page_url}/tags/delete", data={"tag": "a/b 标签"})
        assert removed.status_code == 303
    assert sorted(await tags()) == ["VIP", "爱喝绿茶"]
    too_long = await browser_like.post(f"{page_url}/tags", data={"tags": "长" * 65})
    assert too_long.status_code == 422 and 'data-field="tags"' in too_long.text
    empty = await browser_like.post(f"{page_url}/tags", data={"tags": " ， "})
    assert empty.status_code == 422 and 'data-field="tags"' in empty.text


async def test_message_templates_for_every_channel_are_made_corrected_and_deleted(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)

    async def make(**fields: str) -> httpx.Response:
        return await browser_like.post(
            "/console/templates", data={f"template_{k}": v for k, v in fields.items()}
        )

    # An e-mail needs its subject (the page had no field for it, so no e-mail template could be made).
    no_subject = await make(name="月度上新", channel="email", body="{{ name }}，本月上新")
    assert no_subject.status_code == 422 and 'data-field="template">邮件模板需要主题' in no_subject.text
    made = await make(name="月度上新", channel="email", subject="西湖茶庄上新了", body="{{ name }}，本月上新")
    assert made.status_code == 200 and "selected>月度上新" in made.text
    # An SMS carries the code its vendor approved the text under.
    sms = await make(
        name="催付短信", channel="sms", body="{{ name }}，您的订单待付款", provider_template_code="SMS_123"
    )
    assert sms.status_code == 200
    listed = (await shop.client.get("/api/v1/templates", headers=shop.headers())).json()["items"]
    by_name = {t["name"]: t for t in listed}
    assert by_name["月度上新"]["subject"] == "西湖茶庄上新了"
    assert by_name["催付短信"]["provider_template_code"] == "SMS_123"

    # Corrected on the campaigns page; a refused correction keeps what was typed, by its template.
    sms_id = by_name["催付短信"]["id"]
    page = (await browser_like.get("/console/campaigns")).text
    assert "消息模板" in page and f'action="/console/templates/{sms_id}"' in page and "SMS_123" in page
    fixed = {
        "channel": "sms",
        "name": "催付短信",
        "body": "{{ name }}，订单还没付款哦",
        "provider_template_code": "SMS_456",
    }
    assert (await browser_like.post(f"/console/templates/{sms_id}", data=fixed)).status_code == 303
    got = (await shop.client.get(f"/api/v1/templates/{sms_id}", headers=shop.headers())).json()
    assert (got["body"], got["provider_template_code"]) == ("{{ name }}，订单还没付款哦", "SMS_456")
    broken = await browser_like.post(f"/console/templates/{sms_id}", data=fixed | {"body": "{{ name"})
    assert broken.status_code == 422 and f'data-field="{sms_id}"' in broken.text
    assert "{{ name</textarea>" in broken.text
    for _ in range(2):  # the second as from a stale tab
        gone = await browser_like.post(f"/console/templates/{sms_id}/delete")
        assert gone.status_code == 303
    assert (await shop.client.get(f"/api/v1/templates/{sms_id}", headers=shop.headers())).status_code == 404


async def test_a_coupon_is_limited_and_stopped_from_the_loyalty_page(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    key = shop.headers()
    made = await shop.client.post(
        "/api/v1/coupons/templates",
        json={"name": "老客8元券", "kind": "no_threshold", "amount": "8"},
        headers=key,
    )
    template = made.json()["id"]
    await shop.client.post("/api/v1/loyalty/members/cus_coupon_a/signin", headers=key)
    await shop.client.post(
        f"/api/v1/coupons/templates/{template}/issue", json={"customer_ids": ["cus_coupon_a"]}, headers=key
    )
    await sign_in(browser_like, shop.api_key)
    url = f"/console/loyalty/coupon_templates/{template}"
    assert (await browser_like.post(url, data={"total_limit": "100"})).status_code == 303
    assert (await shop.client.get(f"/api/v1/coupons/templates/{template}", headers=key)).json()[
        "total_limit"
    ] == 100
    below = await browser_like.post(url, data={"total_limit": "0"})
    assert below.status_code == 422 and "不能少于已发放的 1 张" in below.text
    stopped = await browser_like.post(url, data={"total_limit": "100", "stop": "1"})
    assert stopped.status_code == 303
    assert (await shop.client.get(f"/api/v1/coupons/templates/{template}", headers=key)).json()[
        "total_limit"
    ] == 1
    assert "已停发" in (await browser_like.get("/console/loyalty")).text


async def test_a_scheduled_campaign_is_edited_and_its_segment_lists_it_and_is_kept(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await buyer(shop, "plan-1")
    segment = await segment_of_everyone(shop, 1)
    greeting = await template(shop, "inapp", "{{name}}，新品到了")

    async def scheduled(name: str, seconds: int) -> str:
        created = await shop.client.post(
            "/api/v1/campaigns",
            json={
                "name": name,
                "segment_id": segment,
                "channel": "inapp",
                "template_id": greeting,
                "schedule_at": (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(),
            },
            headers=shop.headers(),
        )
        campaign_id = created.json()["id"]
        launched = await shop.client.post(f"/api/v1/campaigns/{campaign_id}/launch", headers=shop.headers())
        assert launched.status_code == 202, launched.text
        return str(campaign_id)

    campaign_id = await scheduled("双十二预告", 3600)
    await sign_in(browser_like, shop.api_key)
    # Changed before its time: the form comes back filled in, the send time on the shop's clock.
    campaign_page = (await browser_like.get(f"/console/campaigns/{campaign_id}")).text
    assert f'href="/console/campaigns/{campaign_id}/edit"' in campaign_page
    editing = (await browser_like.get(f"/console/campaigns/{campaign_id}/edit")).text
    assert "编辑营销" in editing and 'value="双十二预告"' in editing and 'id="template-form"' not in editing
    assert f'<option value="{segment}" selected>' in editing
    refused = await browser_like.post(
        f"/console/campaigns/{campaign_id}/edit",
        data={"name": "", "segment_id": segment, "channel": "inapp", "template_id": greeting},
    )
    assert refused.status_code == 422 and 'data-field="name"' in refused.text and "编辑营销" in refused.text
    saved = await browser_like.post(
        f"/console/campaigns/{campaign_id}/edit",
        data={
            "name": "双十二预告（改）",
            "segment_id": segment,
            "channel": "inapp",
            "template_id": greeting,
            "holdout_percent": "0",
            "schedule_at": "2031-12-12T20:00",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"/console/campaigns/{campaign_id}"
    stored = (await shop.client.get(f"/api/v1/campaigns/{campaign_id}", headers=shop.headers())).json()
    assert stored["name"] == "双十二预告（改）" and stored["schedule_at"] == "2031-12-12T12:00:00Z"
    assert stored["status"] == "scheduled"
    page = (await browser_like.get(f"/console/segments/{segment}")).text
    assert (
        "发给这个人群的营销" in page
        and f'href="/console/campaigns/{campaign_id}">双十二预告（改）</a>' in page
    )
    assert "已排期" in page
    refused = await browser_like.post(f"/console/segments/{segment}/delete")
    assert refused.status_code == 303 and refused.headers["location"].startswith(
        f"/console/segments/{segment}?"
    )
    said = (await browser_like.get(refused.headers["location"])).text
    assert "有已排期的营销要发给这个人群，请先取消：双十二预告（改）" in html.unescape(said)
    assert (await shop.client.get(f"/api/v1/segments/{segment}", headers=shop.headers())).status_code == 200

    # Deleted through the API all the same, the campaign fails when its time comes, and its page says why.
    cancelled = await shop.client.post(f"/api/v1/campaigns/{campaign_id}/cancel", headers=shop.headers())
    assert cancelled.status_code == 200, cancelled.text
    # An activity open only to the segment's members keeps it too, until the activity is ended.
    now = datetime.now(UTC)
    vote = await shop.client.post(
        "/api/v1/activities",
        json={
            "type": "vote",
            "title": "新品投票",
            "options": [{"id": "a", "label": "面霜"}, {"id": "b", "label": "精华"}],
            "eligibility": {"segment_id": segment},
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
        },
        headers=shop.headers(),
    )
    assert vote.status_code == 201, vote.text
    kept = await browser_like.post(f"/console/segments/{segment}/delete")
    said = html.unescape((await browser_like.get(kept.headers["location"])).text)
    assert "有未结束的互动活动只对这个人群开放，请先结束：新品投票" in said
    ended = await shop.client.patch(
        f"/api/v1/activities/{vote.json()['id']}", json={"status": "ended"}, headers=shop.headers()
    )
    assert ended.status_code == 200, ended.text
    doomed = await scheduled("快闪", 2)
    deleted = await shop.client.delete(f"/api/v1/segments/{segment}", headers=shop.headers())
    assert deleted.status_code == 204

    async def failed() -> str:
        page = (await browser_like.get(f"/console/campaigns/{doomed}")).text
        assert 'data-state="failed"' in page
        return page

    failed_page = await eventually(failed, within=30)
    assert f"人群 {segment} 在营销取人之前已被删除，未发送任何消息" in failed_page
    assert "失败" in failed_page and f'formaction="/console/campaigns/{doomed}/cancel"' not in failed_page


async def test_groups_are_kept_by_hand_from_the_console(
    browser_like: httpx.AsyncClient, shop: ShopClient
) -> None:
    await sign_in(browser_like, shop.api_key)
    page = (await browser_like.get("/console/groups")).text
    assert '<a href="/console/groups" class="on">分组</a>' in page and "暂无数据" in page
    nameless = await browser_like.post("/console/groups", data={"name": "", "description": ""})
    assert nameless.status_code == 422 and 'data-field="name"' in nameless.text
    made = await browser_like.post("/console/groups", data={"name": "电话回访", "description": "双11 后"})
    assert made.status_code == 303 and made.headers["location"].startswith("/console/groups/grp_")
    group_url = made.headers["location"]
    group_id = group_url.rsplit("/", 1)[1]

    ids = [await buyer(shop, f"group-{n}", name=f"分组客户{n}") for n in range(3)]
    for customer_id in ids:
        await profiled(shop, customer_id, 1)
    pasted = await browser_like.post(f"{group_url}/members", data={"customer_ids": f"{ids[0]}，{ids[1]}\n"})
    assert pasted.headers["location"] == f"{group_url}?added=2"
    page = (await browser_like.get(pasted.headers["location"])).text
    assert 'id="group-size">2<' in page and "已添加: 2" in page and "分组客户1" in page
    unknown = await browser_like.post(f"{group_url}/members", data={"customer_ids": "cus_nobody"})
    assert (
        unknown.status_code == 422 and 'data-field="members"' in unknown.text and "cus_nobody" in unknown.text
    )
    empty = await browser_like.post(f"{group_url}/members", data={"customer_ids": ""})
    assert empty.status_code == 422 and 'data-field="members"' in empty.text

    # From a customer's page: the groups they are in, joined and left there.
    customer = (await browser_like.get(f"/console/customers/{ids[2]}")).text
    assert f'<option value="{group_id}">电话回访</option>' in customer
    assert (
        await browser_like.post(f"/console/customers/{ids[2]}/groups", data={"group_id": group_id})
    ).status_code == 303
    customer = (await browser_like.get(f"/console/customers/{ids[2]}")).text
    assert f'href="/console/groups/{group_id}">电话回访</a>' in customer
    filtered = (await browser_like.get(f"/console/customers?group_id={group_id}")).text
    assert all(f"/console/customers/{i}" in filtered for i in ids)
    await browser_like.post(f"/console/customers/{ids[2]}/groups/{group_id}/leave")
    await browser_like.post(f"{group_url}/members/{ids[0]}/remove")
    listed = (await shop.client.get(f"/api/v1/groups/{group_id}/members", headers=shop.headers())).json()
    assert [m["customer_id"] for m in listed["items"]] == [ids[1]]

    # A segment of the group's customers, the group typed by its name in the builder.
    rule_form = {"combine": "all", "field_0": "group", "op_0": "in", "value_0": "电话回访"}
    preview = await browser_like.post("/console/segments/preview", data=rule_form)
    assert "<b>1</b>" in preview.text, preview.text
    typo = await browser_like.post("/console/segments/preview", data={**rule_form, "value_0": "电话会访"})
    assert "分组 电话会访 不存在" in typo.text
    made_segment = await browser_like.post("/console/segments", data={"name": "回访名单", **rule_form})
    segment_id = made_segment.headers["location"].rsplit("/", 1)[1]
    segment = (await shop.client.get(f"/api/v1/segments/{segment_id}", headers=shop.headers())).json()
    assert segment["rule"] == {"all": [{"field": "group", "op": "in", "value": [group_id]}]}
    assert 'value="电话回访"' in (await browser_like.get(f"/console/segments/{segment_id}/edit")).text

    # Not deleted while that segment's rule names it (it would match nobody): said on the group's page.
    held = await browser_like.post(f"{group_url}/delete")
    assert held.headers["location"].startswith(f"{group_url}?error=")
    assert (
        "人群「回访名单」的规则用到了这个分组，请先修改规则"
        in (await browser_like.get(held.headers["location"])).text
    )
    await shop.client.delete(f"/api/v1/segments/{segment_id}", headers=shop.headers())

    renamed = await browser_like.post(group_url, data={"name": "电话回访 (已完成)", "description": ""})
    assert renamed.headers["location"] == group_url
    stored = (await shop.client.get(f"/api/v1/groups/{group_id}", headers=shop.headers())).json()
    assert (stored["name"], stored["description"]) == ("电话回访 (已完成)", None)
    assert (await browser_like.post(f"{group_url}/delete")).headers["location"] == "/console/groups"
    assert (await shop.client.get(f"/api/v1/groups/{group_id}", headers=shop.headers())).status_code == 404
    assert (await shop.client.get(f"/api/v1/customers/{ids[1]}", headers=shop.headers())).status_code == 200
