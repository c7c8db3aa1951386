"""Campaigns through the gateway, sent for real: in-app inbox, the local Aliyun SMS endpoint and the
local SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.messaging.helpers import (
    NO_QUIET_HOURS,
    buyer,
    call,
    campaign_done,
    configure_sms,
    configure_tencent_sms,
    messages,
    ok,
    segment_of_everyone,
    template,
)


async def test_inapp_campaign_reaches_every_inbox_but_the_holdout(shop: ShopClient) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    customers = [await buyer(shop, f"in-{i}", name=f"顾客{i}") for i in range(10)]
    segment = await segment_of_everyone(shop, 10)
    greeting = await template(shop, "inapp", "{{name}}，{{shop_name}}感谢您的支持！")
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {
            "name": "感恩回馈",
            "segment_id": segment,
            "channel": "inapp",
            "template_id": greeting,
            "holdout_percent": 20,
        },
        201,
    )
    assert campaign["status"] == "draft"
    launched = await ok(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/launch", status=202)
    assert launched["status"] == "scheduled"

    done = await campaign_done(shop, campaign["id"])
    assert (done["targeted"], done["holdout"], done["sent"]) == (8, 2, 8)
    reached = {m["customer_id"] for m in await messages(shop, campaign_id=campaign["id"])}
    assert len(reached) == 8 and reached < set(customers)
    someone = next(iter(reached))
    inbox = await ok(shop, "GET", f"/api/v1/inbox/{someone}")
    assert inbox["unread"] == 1
    assert inbox["items"][0]["body"].endswith("，测试小店感谢您的支持！")
    read = await ok(shop, "POST", f"/api/v1/inbox/{someone}/messages/{inbox['items'][0]['id']}/read")
    assert read["read_at"] is not None
    assert (await ok(shop, "GET", f"/api/v1/inbox/{someone}"))["unread"] == 0
    held_out = (set(customers) - reached).pop()
    assert (await ok(shop, "GET", f"/api/v1/inbox/{held_out}"))["items"] == []


async def test_sms_campaign_goes_through_the_aliyun_endpoint_in_batches(
    shop: ShopClient, stack: ServerSet
) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await configure_sms(shop)
    for i in range(5):
        await buyer(shop, f"sms-{i}", name=f"李{i}", mobile=f"1380013{i:04d}")
    await buyer(shop, "sms-bad", name="无号码", mobile="12345")
    segment = await segment_of_everyone(shop, 6)
    text = await template(shop, "sms", "{{name}}您好，老客专享优惠已到账，回TD退订")
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "短信", "segment_id": segment, "channel": "sms", "template_id": text},
        201,
    )
    before = len(stack.providers.sms)
    await ok(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/launch", status=202)
    done = await campaign_done(shop, campaign["id"])
    assert (done["targeted"], done["sent"], done["suppressed"]) == (6, 5, 1)
    assert done["suppressed_by"] == {"invalid_contact": 1}
    phones = {f"1380013{i:04d}" for i in range(5)}
    received = [r for r in stack.providers.sms[before:] if r["phone"] in phones]
    assert sorted(r["phone"] for r in received) == [f"1380013{i:04d}" for i in range(5)]
    assert {r["sign_name"] for r in received} == {"老客小店"}
    assert {r["params"]["name"] for r in received} == {f"李{i}" for i in range(5)}
    # Batched: one SendBatchSms call per dispatcher loop that took a share of the five.
    assert len({r["biz_id"] for r in received}) <= stack["messaging"].settings.dispatch_loops


async def test_email_campaign_carries_one_click_unsubscribe_that_works(
    shop: ShopClient, stack: ServerSet, gateway: httpx.AsyncClient
) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await ok(
        shop,
        "PUT",
        "/api/v1/messaging/channels/email",
        {"from_address": "hello@shop.example", "from_name": "老客小店"},
    )
    customer = await buyer(shop, "mail-1", name="张三", email="zhang@example.com")
    segment = await segment_of_everyone(shop, 1)
    mail = await template(
        shop, "email", "{{name}}您好，新品上架。退订：{{unsubscribe_url}}", subject="{{shop_name}}上新"
    )
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "上新", "segment_id": segment, "channel": "email", "template_id": mail},
        201,
    )
    await ok(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/launch", status=202)
    assert (await campaign_done(shop, campaign["id"]))["sent"] == 1
    received = [m for m in stack.providers.mail if m["rcpt_tos"] == ["zhang@example.com"]]
    assert len(received) == 1
    headers = received[0]["headers"]
    assert received[0]["subject"] == "测试小店上新"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = headers["List-Unsubscribe"].strip("<>")
    assert link in received[0]["text"]

    # The mail client's one-click POST, with no API key.
    path = link.split("127.0.0.1", 1)[1].split("/", 1)[1]
    response = await gateway.post("/" + path, content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 200, response.text
    consent = await ok(shop, "GET", f"/api/v1/customers/{customer}/consent")
    assert consent["channels"] == {"sms": True, "email": False, "inapp": True}
    forged = await gateway.post("/" + path.replace("t=", "t=0"), content=b"List-Unsubscribe=One-Click")
    assert forged.status_code == 404


async def test_sms_through_tencent_cloud_with_positional_parameters(
    shop: ShopClient, stack: ServerSet
) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await configure_tencent_sms(shop)
    for i in range(3):
        await buyer(shop, f"tc-{i}", name="陈" if i < 2 else "林", mobile=f"1370013{i:04d}")
    segment = await segment_of_everyone(shop, 3)
    text = await template(shop, "sms", "{{name}}您好，{{shop_name}}老客专享")
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "腾讯云", "segment_id": segment, "channel": "sms", "template_id": text},
        201,
    )
    await ok(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/launch", status=202)
    assert (await campaign_done(shop, campaign["id"]))["sent"] == 3
    received = [
        r for r in stack.providers.sms if r.get("provider") == "tencent" and r["phone"].startswith("1370013")
    ]
    assert sorted((r["phone"], tuple(r["params"])) for r in received) == [
        ("13700130000", ("陈", "测试小店")),
        ("13700130001", ("陈", "测试小店")),
        ("13700130002", ("林", "测试小店")),
    ]
    assert {r["app_id"] for r in received} == {"1400000001"}

    # A wrong SecretKey: Tencent refuses the signature and the messages fail with its reason.
    await configure_tencent_sms(shop, access_key_secret="wrong")
    again = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "错误密钥", "segment_id": segment, "channel": "sms", "template_id": text},
        201,
    )
    await ok(shop, "POST", f"/api/v1/campaigns/{again['id']}/launch", status=202)
    done = await campaign_done(shop, again["id"])
    assert done["failed"] == 3
    reasons = {m["reason"] for m in await messages(shop, campaign_id=again["id"])}
    assert reasons == {"AuthFailure.SignatureFailure: The provided credentials could not be validated."}


async def test_a_campaign_whose_segment_is_deleted_before_its_time_fails_and_says_why(
    shop: ShopClient,
) -> None:
    await buyer(shop, "gone-1")
    segment = await segment_of_everyone(shop, 1)
    greeting = await template(shop, "inapp", "{{name}}，新品到了")
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {
            "name": "新品",
            "segment_id": segment,
            "channel": "inapp",
            "template_id": greeting,
            "schedule_at": soon,
        },
        201,
    )
    assert (await ok(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/launch", status=202))[
        "status"
    ] == "scheduled"
    listed = await ok(shop, "GET", f"/api/v1/campaigns?segment_id={segment}")
    assert [c["id"] for c in listed["items"]] == [campaign["id"]]
    assert (await ok(shop, "GET", "/api/v1/campaigns?segment_id=seg_other"))["items"] == []
    await ok(shop, "DELETE", f"/api/v1/segments/{segment}", status=204)

    async def failed() -> dict[str, Any]:
        current = await ok(shop, "GET", f"/api/v1/campaigns/{campaign['id']}")
        assert current["status"] == "failed", current
        return dict(current)

    done = await eventually(failed, within=30)
    assert done["failure_reason"] == (
        f"segment {segment} was deleted before the campaign's audience was taken, so nothing was sent"
    )
    assert (done["targeted"], done["sent"]) == (0, 0)
    assert await messages(shop, campaign_id=campaign["id"]) == []


async def test_a_campaign_is_changed_until_its_audience_is_taken(shop: ShopClient) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await buyer(shop, "edit-1")
    everyone = await segment_of_everyone(shop, 1)
    nobody = await ok(
        shop,
        "POST",
        "/api/v1/segments",
        {"name": "没有人", "rule": {"field": "orders_count", "op": "gte", "value": 99}},
        201,
    )
    first = await template(shop, "inapp", "{{name}}，上新了")
    second = await template(shop, "inapp", "{{name}}，双十二见")
    texted = await template(shop, "sms", "{{name}}，短信")
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "草稿", "segment_id": everyone, "channel": "inapp", "template_id": first},
        201,
    )
    path = f"/api/v1/campaigns/{campaign['id']}"

    # A draft: a field left out keeps its value; a template per tier replaces the one template.
    changed = await ok(shop, "PATCH", path, {"name": "双十二", "variants_by_tier": {"*": second}})
    assert (changed["name"], changed["template_id"], changed["variants_by_tier"]) == (
        "双十二",
        None,
        {"*": second},
    )
    assert (changed["segment_id"], changed["holdout_percent"], changed["status"]) == (everyone, 0, "draft")
    changed = await ok(shop, "PATCH", path, {"template_id": second, "segment_id": nobody["id"]})
    assert (changed["template_id"], changed["variants_by_tier"], changed["segment_id"]) == (
        second,
        None,
        nobody["id"],
    )
    for bad, said in (
        ({"channel": "sms"}, f"template {second} is for inapp, the campaign is sms"),
        ({"name": None}, "name cannot be null"),
        ({"segment_id": "seg_nope"}, "segment seg_nope not found"),
        ({"holdout_percent": 95}, "holdout_percent"),
        ({"status": "completed"}, "status"),
    ):
        refused = await call(shop, "PATCH", path, bad)
        assert refused.status_code == 422 and said in refused.json()["detail"], (bad, refused.text)
    moved = await ok(shop, "PATCH", path, {"channel": "sms", "template_id": texted})
    assert (moved["channel"], moved["template_id"]) == ("sms", texted)
    await ok(shop, "PATCH", path, {"channel": "inapp", "template_id": second, "segment_id": everyone})

    # Scheduled: moved to another time, but not to a segment with nobody in it.
    later = datetime.now(UTC) + timedelta(hours=1)
    await ok(shop, "PATCH", path, {"schedule_at": later.isoformat()})
    assert (await ok(shop, "POST", f"{path}/launch", status=202))["status"] == "scheduled"
    empty = await call(shop, "PATCH", path, {"segment_id": nobody["id"]})
    assert empty.status_code == 409 and "has no members" in empty.json()["detail"]
    sooner = await ok(shop, "PATCH", path, {"schedule_at": None, "holdout_percent": 0})
    assert sooner["status"] == "scheduled"
    assert datetime.fromisoformat(sooner["schedule_at"]) < later - timedelta(minutes=59)

    # Once its audience is taken, nothing changes any more.
    done = await campaign_done(shop, campaign["id"])
    assert (done["sent"], done["variants_by_tier"], done["template_id"]) == (1, None, second)
    late = await call(shop, "PATCH", path, {"name": "晚了"})
    assert (
        late.status_code == 409
        and "only a draft or a scheduled campaign can be changed" in late.json()["detail"]
    )


async def test_campaigns_are_listed_a_page_at_a_time(shop: ShopClient) -> None:
    await buyer(shop, "pages-1")
    segment = await segment_of_everyone(shop, 1)
    greeting = await template(shop, "inapp", "{{name}}，你好")
    made = [
        (
            await ok(
                shop,
                "POST",
                "/api/v1/campaigns",
                {"name": f"第{i}期", "segment_id": segment, "channel": "inapp", "template_id": greeting},
                201,
            )
        )["id"]
        for i in range(3)
    ]
    first = (await call(shop, "GET", "/api/v1/campaigns", limit=2)).json()
    assert [c["id"] for c in first["items"]] == made[:0:-1] and first["next_cursor"]
    rest = (await call(shop, "GET", "/api/v1/campaigns", limit=2, cursor=first["next_cursor"])).json()
    assert [c["id"] for c in rest["items"]] == made[:1] and rest["next_cursor"] is None
    forged = await call(shop, "GET", "/api/v1/campaigns", cursor="not-ours")
    assert forged.status_code == 400 and forged.json()["error"] == "bad_request"


async def test_a_template_in_use_is_not_deleted(shop: ShopClient) -> None:
    """A campaign not finished or an automation that is on would fail message by message without it."""
    await buyer(shop, "tpl-use-1")
    segment = await segment_of_everyone(shop, 1)
    greeting = await template(shop, "inapp", "{{name}}，好久不见")
    campaign = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "回访", "segment_id": segment, "channel": "inapp", "variants_by_tier": {"*": greeting}},
        201,
    )
    await ok(shop, "PUT", "/api/v1/automations/winback", {"channel": "inapp", "template_id": greeting})
    refused = await call(shop, "DELETE", f"/api/v1/templates/{greeting}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        f"template {greeting} is still used by campaign 回访, automation winback (change or end them first)"
    )
    await ok(shop, "POST", f"/api/v1/campaigns/{campaign['id']}/cancel")
    await ok(
        shop,
        "PUT",
        "/api/v1/automations/winback",
        {"enabled": False, "channel": "inapp", "template_id": greeting},
    )
    await ok(shop, "DELETE", f"/api/v1/templates/{greeting}", status=204)
    assert (await call(shop, "GET", f"/api/v1/templates/{greeting}")).status_code == 404
