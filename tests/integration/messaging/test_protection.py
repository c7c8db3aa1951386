"""Protection of buyers: opt-outs honoured even for queued messages, quiet hours deferring (not
dropping) marketing, the frequency cap, and SMS vendor failures retried without duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from laoke.kit import clock
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

# 22:30 in Shanghai: inside the default quiet hours (21:00–09:00).
LATE_EVENING = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


@pytest.fixture
def travel() -> Iterator[None]:
    yield
    clock.reset()


async def _campaign(shop: ShopClient, segment: str, channel: str, template_id: str) -> str:
    body = {"name": "营销", "segment_id": segment, "channel": channel, "template_id": template_id}
    created = await ok(shop, "POST", "/api/v1/campaigns", body, 201)
    await ok(shop, "POST", f"/api/v1/campaigns/{created['id']}/launch", status=202)
    return str(created["id"])


async def test_quiet_hours_defer_marketing_and_an_opt_out_meanwhile_is_honoured(
    shop: ShopClient, travel: None
) -> None:
    clock.travel(LATE_EVENING)
    keep = await buyer(shop, "q-keep", name="夜猫")
    leave = await buyer(shop, "q-leave", name="早鸟")
    segment = await segment_of_everyone(shop, 2)
    campaign = await _campaign(shop, segment, "inapp", await template(shop, "inapp", "{{name}}，早上好"))

    async def deferred() -> None:
        found = await messages(shop, campaign_id=campaign)
        assert sorted((m["status"], m["deferred"]) for m in found) == [("queued", True)] * 2
        assert {m["not_before"] for m in found} == {"2026-11-24T01:00:00Z"}

    await eventually(deferred, within=20)
    # The shop owner sees why nothing has gone out yet.
    async with httpx.AsyncClient(base_url=shop.client.base_url, timeout=30) as console:
        await console.post("/console/login", data={"api_key": shop.api_key})
        page = (await console.get(f"/console/campaigns/{campaign}")).text
    assert '<b id="r-deferred">2</b>' in page, page
    await ok(shop, "PUT", f"/api/v1/customers/{leave}/consent", {"channel": "inapp", "subscribed": False})

    clock.travel(NEXT_MORNING + timedelta(seconds=1))
    done = await campaign_done(shop, campaign)
    assert (done["sent"], done["suppressed"], done["deferred"]) == (1, 1, 2)
    assert done["suppressed_by"] == {"opt_out": 1}
    assert [m["body"] for m in (await ok(shop, "GET", f"/api/v1/inbox/{keep}"))["items"]] == ["夜猫，早上好"]
    assert (await ok(shop, "GET", f"/api/v1/inbox/{leave}"))["items"] == []


async def test_frequency_cap_suppresses_marketing_beyond_the_limit(shop: ShopClient) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", {**NO_QUIET_HOURS, "cap_messages": 1, "cap_days": 7})
    await buyer(shop, "cap-1")
    segment = await segment_of_everyone(shop, 1)
    first = await _campaign(shop, segment, "inapp", await template(shop, "inapp", "第一条"))
    assert (await campaign_done(shop, first))["sent"] == 1
    second = await _campaign(shop, segment, "inapp", await template(shop, "inapp", "第二条"))
    done = await campaign_done(shop, second)
    assert (done["sent"], done["suppressed_by"]) == (0, {"frequency_cap": 1})


async def test_sms_vendor_errors_are_retried_then_failed_never_duplicated(
    shop: ShopClient, stack: ServerSet, travel: None
) -> None:
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    await configure_sms(shop)
    await buyer(shop, "err-1", mobile="13700000001")
    segment = await segment_of_everyone(shop, 1)
    text = await template(shop, "sms", "您好")
    faults = httpx.AsyncClient(base_url=stack.providers_url)

    # One timeout, then one throttling answer, then through: sent once.
    await faults.post("/_local/sms/faults", json={"timeouts": 1, "hang_seconds": 4})  # the stack waits 3 s
    campaign = await _campaign(shop, segment, "sms", text)

    async def waiting_after(attempts: int, reason: str) -> None:
        found = await messages(shop, campaign_id=campaign)
        assert [(m["status"], m["attempts"]) for m in found] == [("queued", attempts)], found
        assert reason in found[0]["reason"]

    await eventually(lambda: waiting_after(1, "ReadTimeout"), within=20)
    await faults.post("/_local/sms/faults", json={"errors": 1, "code": "isv.BUSINESS_LIMIT_CONTROL"})
    clock.travel(clock.now() + timedelta(hours=1))
    await eventually(lambda: waiting_after(2, "isv.BUSINESS_LIMIT_CONTROL"), within=20)
    clock.travel(clock.now() + timedelta(hours=1))
    done = await campaign_done(shop, campaign)
    assert done["sent"] == 1
    assert [s["phone"] for s in stack.providers.sms if s["phone"] == "13700000001"] == ["13700000001"]

    # A vendor that keeps refusing: four attempts, then failed with its reason; nothing sent.
    await faults.post("/_local/sms/faults", json={"errors": 100, "code": "isp.SYSTEM_ERROR"})
    other = await _campaign(shop, segment, "sms", await template(shop, "sms", "再次您好"))
    for _ in range(6):
        clock.travel(clock.now() + timedelta(hours=1))
        await eventually(lambda: _settled(shop, other), within=10)
    found = await messages(shop, campaign_id=other)
    assert (found[0]["status"], found[0]["attempts"]) == ("failed", 4)
    assert found[0]["reason"].startswith("isp.SYSTEM_ERROR")
    await faults.delete("/_local")
    await faults.aclose()


async def _settled(shop: ShopClient, campaign: str) -> None:
    """Nothing of the campaign is due now (it waits for its retry time or is done)."""
    found = await messages(shop, campaign_id=campaign)
    assert found and all(
        m["status"] != "queued" or datetime.fromisoformat(m["not_before"]) > clock.now() for m in found
    ), found


async def test_bad_templates_and_campaigns_are_refused_clearly(
    shop: ShopClient, other_shop: ShopClient
) -> None:
    unknown = await call(
        shop, "POST", "/api/v1/templates", {"name": "x", "channel": "sms", "body": "{{nickname}}"}
    )
    assert unknown.status_code == 422 and "nickname" in unknown.json()["detail"]
    escape = await call(
        shop,
        "POST",
        "/api/v1/templates",
        {"name": "x", "channel": "inapp", "body": "{{ name.__class__.__mro__ }}"},
    )
    assert escape.status_code == 422
    no_subject = await call(
        shop, "POST", "/api/v1/templates", {"name": "x", "channel": "email", "body": "hi"}
    )
    assert no_subject.status_code == 422
    preview = await ok(shop, "POST", "/api/v1/templates/preview", {"channel": "sms", "body": "好" * 80})
    assert (preview["characters"], preview["sms_parts"]) == (80, 2)

    tpl = await template(shop, "inapp", "您好")
    foreign = (
        await ok(
            other_shop,
            "POST",
            "/api/v1/segments",
            {"name": "别人的", "rule": {"all": [{"field": "orders_count", "op": "gte", "value": 1}]}},
            201,
        )
    )["id"]
    refused = await call(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "x", "segment_id": foreign, "channel": "inapp", "template_id": tpl},
    )
    assert refused.status_code == 422 and "not found" in refused.json()["detail"]
    empty = (
        await ok(
            shop,
            "POST",
            "/api/v1/segments",
            {"name": "空", "rule": {"all": [{"field": "orders_count", "op": "gte", "value": 999}]}},
            201,
        )
    )["id"]
    draft = await ok(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "x", "segment_id": empty, "channel": "inapp", "template_id": tpl},
        201,
    )
    launched = await call(shop, "POST", f"/api/v1/campaigns/{draft['id']}/launch")
    assert launched.status_code == 409 and "no members" in launched.json()["detail"]
    wrong_channel = await call(
        shop,
        "POST",
        "/api/v1/campaigns",
        {"name": "x", "segment_id": empty, "channel": "sms", "template_id": tpl},
    )
    assert wrong_channel.status_code == 422
    assert (await call(other_shop, "GET", f"/api/v1/campaigns/{draft['id']}")).status_code == 404


async def _one_delivered_one_failed(
    shop: ShopClient,
    vendor: httpx.AsyncClient,
    prefix: str,
    failure: str,
    *,
    report_before_answer: bool = False,
) -> tuple[dict[str, Any], str, str]:
    """The SMS channel's callback registered with the local vendor, two buyers messaged, one of them
    undeliverable: the vendor's reports settle one `delivered` and one `failed` with its reason.
    Returns the channel, the deliverable buyer's customer id and the segment of both."""
    await ok(shop, "PUT", "/api/v1/messaging/policy", NO_QUIET_HOURS)
    channels = (await ok(shop, "GET", "/api/v1/messaging/channels"))["items"]
    sms = next(c for c in channels if c["channel"] == "sms")
    assert sms["settings"]["access_key_secret"] == "********"
    await vendor.post("/_local/sms/callback", json={"url": sms["callback_url"]})
    faults = {"undeliverable": [f"{prefix}2"], "report_before_answer": report_before_answer}
    await vendor.post("/_local/sms/faults", json=faults)
    stays = await buyer(shop, f"td-{prefix}-1", mobile=f"{prefix}1")
    await buyer(shop, f"td-{prefix}-2", mobile=f"{prefix}2")
    segment = await segment_of_everyone(shop, 2)
    first = await _campaign(shop, segment, "sms", await template(shop, "sms", "上新啦，回TD退订"))

    async def settled() -> None:
        report = await ok(shop, "GET", f"/api/v1/campaigns/{first}")
        assert (report["delivered"], report["failed"]) == (1, 1), {
            k: report[k] for k in ("status", "sent", "failed", "delivered", "suppressed")
        }

    await eventually(settled, within=20)
    failed = [m for m in await messages(shop, campaign_id=first) if m["status"] == "failed"]
    assert failed[0]["reason"] == failure
    return sms, stays, segment


async def test_sms_reports_settle_delivery_and_a_td_reply_opts_the_buyer_out(
    shop: ShopClient, stack: ServerSet
) -> None:
    await configure_sms(shop)
    async with httpx.AsyncClient(base_url=stack.providers_url) as vendor:
        sms, stays, segment = await _one_delivered_one_failed(
            shop, vendor, "1350000000", "MOBILE_NOT_ON_SERVICE: 用户停机"
        )
        # The buyer texts back 退订; the next campaign skips them.
        answer = (
            await vendor.post("/_local/sms/reply", json={"phone": "13500000001", "content": " 退订 "})
        ).json()
        assert answer == {"ok": True, "answer": {"code": 0, "msg": "成功"}}
        consent = await ok(shop, "GET", f"/api/v1/customers/{stays}/consent")
        assert consent["channels"]["sms"] is False
        second = await _campaign(shop, segment, "sms", await template(shop, "sms", "再次上新"))
        assert (await campaign_done(shop, second))["suppressed_by"] == {"opt_out": 1}

        forged = await shop.client.post(sms["callback_url"].split("?")[0] + "?t=nope", json=[])
        assert forged.status_code == 404
        await vendor.delete("/_local")


async def test_tencent_status_callbacks_settle_delivery_and_a_td_reply_opts_the_buyer_out(
    shop: ShopClient, stack: ServerSet
) -> None:
    await configure_tencent_sms(shop)
    async with httpx.AsyncClient(base_url=stack.providers_url) as vendor:
        sms, stays, _ = await _one_delivered_one_failed(shop, vendor, "1350000001", "MK:0001: 用户停机")
        assert f"/api/v1/webhooks/tencentsms/{shop.shop_id}?t=" in sms["callback_url"]

        # Tencent's reply callback (回复) is one object: TD opts the buyer out of SMS.
        reply = {"extend": "", "mobile": "13500000011", "nationcode": "86", "sign": "老客小店", "text": "TD",
                 "time": 1763870000}  # fmt: skip
        answer = await shop.client.post(sms["callback_url"], json=reply)
        assert answer.json() == {"result": 0, "errmsg": "OK"}
        consent = await ok(shop, "GET", f"/api/v1/customers/{stays}/consent")
        assert consent["channels"]["sms"] is False

        # A forged token, the Tencent token on Aliyun's path, and a body of neither shape are refused.
        forged = await shop.client.post(sms["callback_url"].split("?")[0] + "?t=nope", json=[])
        assert forged.status_code == 404
        crossed = await shop.client.post(sms["callback_url"].replace("tencentsms", "aliyunsms"), json=[])
        assert crossed.status_code == 404
        assert (await shop.client.post(sms["callback_url"], json={"a": 1})).status_code == 422
        await vendor.delete("/_local")


async def test_pause_resume_and_cancel_move_the_queued_messages(shop: ShopClient, travel: None) -> None:
    clock.travel(LATE_EVENING)  # quiet hours: the campaign's messages wait, so there is a queue to steer
    for i in range(3):
        await buyer(shop, f"steer-{i}")
    segment = await segment_of_everyone(shop, 3)
    campaign = await _campaign(shop, segment, "inapp", await template(shop, "inapp", "晚安"))

    async def statuses(expected: str) -> None:
        found = await messages(shop, campaign_id=campaign)
        assert [m["status"] for m in found] == [expected] * 3, found

    await eventually(lambda: statuses("queued"), within=20)
    assert (await ok(shop, "POST", f"/api/v1/campaigns/{campaign}/pause"))["status"] == "paused"
    await statuses("paused")
    refused = await call(shop, "POST", f"/api/v1/campaigns/{campaign}/launch")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert (await ok(shop, "POST", f"/api/v1/campaigns/{campaign}/resume"))["status"] == "sending"
    await statuses("queued")
    cancelled = await ok(shop, "POST", f"/api/v1/campaigns/{campaign}/cancel")
    assert (cancelled["status"], cancelled["cancelled"], cancelled["queued"]) == ("cancelled", 3, 0)
    clock.travel(NEXT_MORNING + timedelta(seconds=1))
    await asyncio.sleep(1)  # many dispatcher cycles (50 ms apart in tests) after quiet hours ended
    await statuses("cancelled")  # nothing went out after the cancel
    again = await call(shop, "POST", f"/api/v1/campaigns/{campaign}/pause")
    assert again.status_code == 409


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_reports_that_overtake_the_vendors_answer_still_settle_their_messages(
    shop: ShopClient, stack: ServerSet, provider: str
) -> None:
    """The vendor pushes its delivery reports before answering the send: they name ids messaging does
    not know yet (the messages are still `sending`), are kept, and settle them once the answer lands."""
    if provider == "tencent":
        await configure_tencent_sms(shop)
    else:
        await configure_sms(shop)
    async with httpx.AsyncClient(base_url=stack.providers_url) as vendor:
        await _one_delivered_one_failed(
            shop,
            vendor,
            "1350000003",
            "MK:0001: 用户停机" if provider == "tencent" else "MOBILE_NOT_ON_SERVICE: 用户停机",
            report_before_answer=True,
        )
        if provider == "aliyun":
            # A report naming no message of ours, with an id longer than any we store: accepted, kept nowhere.
            channels = (await ok(shop, "GET", "/api/v1/messaging/channels"))["items"]
            url = next(c for c in channels if c["channel"] == "sms")["callback_url"]
            stray = [{"phone_number": "13500000039", "biz_id": "x" * 150, "success": "true"}]
            answer = await shop.client.post(url, json=stray)
            assert (answer.status_code, answer.json()) == (200, {"code": 0, "msg": "成功"})
        await vendor.delete("/_local")


async def test_a_template_read_goes_back_corrected_and_an_id_sent_is_not_taken(shop: ShopClient) -> None:
    made = await ok(
        shop,
        "POST",
        "/api/v1/templates",
        {"name": "上新", "channel": "inapp", "body": "上新", "id": "tpl_mine"},
        201,
    )
    assert made["id"] != "tpl_mine"  # ids are Laoke's to give
    read = await ok(shop, "GET", f"/api/v1/templates/{made['id']}")
    corrected = await ok(
        shop, "PUT", f"/api/v1/templates/{made['id']}", read | {"body": "{{ name }}，上新了"}
    )
    assert (corrected["id"], corrected["body"], corrected["variables"]) == (
        made["id"],
        "{{ name }}，上新了",
        ["name"],
    )
