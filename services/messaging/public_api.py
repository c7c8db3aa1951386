"""What buyers and SMS vendors reach without an API key, routed by the gateway as public webhooks: the
one-click unsubscribe of e-mails, and the SMS vendor's delivery reports and replies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.db import SessionDep
from laoke.kit.errors import NotFound, Unprocessable
from laoke.kit.outbox import Outbox
from laoke.kit.service import OutboxDep
from services.messaging import consent, deliveries
from services.messaging.channels import Channel

public = APIRouter(tags=["webhooks"])


def _unsubscribe_target(request: Request, shop_id: str) -> tuple[str, str]:
    customer_id, channel, token = (request.query_params.get(k, "") for k in ("c", "ch", "t"))
    settings = request.app.state.settings
    if channel not in {c.value for c in Channel} or not consent.token_valid(
        settings, shop_id, customer_id, channel, token
    ):
        raise NotFound("this unsubscribe link is not valid")
    return customer_id, channel


@public.get(
    "/api/v1/webhooks/unsubscribe/{shop_id}",
    response_class=HTMLResponse,
    summary="The unsubscribe page an e-mail links to (a button; visiting alone changes nothing)",
)
async def unsubscribe_page(shop_id: str, request: Request) -> HTMLResponse:
    _unsubscribe_target(request, shop_id)
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>退订</title>"
        f"<form method=post action='?{request.url.query}'>"
        "<input type=hidden name=List-Unsubscribe value=One-Click>"
        "<p>不再接收本店的邮件？ Stop e-mails from this shop?</p><button>退订 Unsubscribe</button></form>"
    )


@public.post(
    "/api/v1/webhooks/unsubscribe/{shop_id}",
    response_class=HTMLResponse,
    summary="One-click unsubscribe (RFC 8058): mail clients POST `List-Unsubscribe=One-Click` here",
)
async def unsubscribe(shop_id: str, request: Request, session: SessionDep, outbox: OutboxDep) -> HTMLResponse:
    customer_id, channel = _unsubscribe_target(request, shop_id)
    await consent.set_consent(session, outbox, shop_id, customer_id, channel, False, "unsubscribe")
    return HTMLResponse("<!doctype html><meta charset=utf-8><p>已退订。You are unsubscribed.</p>")


@public.post(
    "/api/v1/webhooks/aliyunsms/{shop_id}",
    summary="Aliyun's HTTP push of SMS delivery reports (SmsReport) and buyer replies (SmsUp)",
    description="Set the SMS channel's `callback_url` in the vendor's console. Reports mark messages "
    "`delivered` or `failed` with the carrier's reason; a reply of 退订/TD opts the buyer out of SMS.",
)
async def aliyun_sms_push(
    shop_id: str, request: Request, session: SessionDep, outbox: OutboxDep
) -> dict[str, Any]:
    if not consent.sms_callback_valid(request.app.state.settings, shop_id, request.query_params.get("t", "")):
        raise NotFound("unknown callback")
    try:
        items = await request.json()
    except ValueError as exc:
        raise Unprocessable("the body must be a JSON array of SmsReport or SmsUp messages") from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Unprocessable("the body must be a JSON array of SmsReport or SmsUp messages")
    reports = [i for i in items if "biz_id" in i and "phone_number" in i]
    replies = [i for i in items if "content" in i and "phone_number" in i]
    await deliveries.record_reports(session, shop_id, reports)
    for reply in replies:
        await _reply(session, outbox, shop_id, str(reply["phone_number"]), str(reply["content"]))
    return {"code": 0, "msg": "成功"}


async def _reply(session: AsyncSession, outbox: Outbox, shop_id: str, phone: str, content: str) -> None:
    """A buyer's SMS reply: 退订 / TD opts them out of SMS."""
    if consent.wants_out(content):
        for customer_id in await deliveries.customers_with_mobile(session, shop_id, phone):
            await consent.set_consent(session, outbox, shop_id, customer_id, Channel.SMS, False, "sms_reply")


@public.post(
    "/api/v1/webhooks/tencentsms/{shop_id}",
    summary="Tencent Cloud's SMS callbacks: delivery status (回执, an array) and replies (回复, an object)",
    description="Set the SMS channel's `callback_url` as both callback addresses in the Tencent Cloud "
    "console. Status reports mark messages `delivered` or `failed` with the carrier's reason; a reply "
    "of 退订/TD opts the buyer out of SMS.",
)
async def tencent_sms_push(
    shop_id: str, request: Request, session: SessionDep, outbox: OutboxDep
) -> dict[str, Any]:
    token = request.query_params.get("t", "")
    if not consent.sms_callback_valid(request.app.state.settings, shop_id, token, "tencent"):
        raise NotFound("unknown callback")
    problem = "the body must be a JSON array of status reports or a reply object"
    try:
        body = await request.json()
    except ValueError as exc:
        raise Unprocessable(problem) from exc
    if isinstance(body, dict) and "mobile" in body and "text" in body:
        await _reply(session, outbox, shop_id, str(body["mobile"]), str(body["text"]))
        return {"result": 0, "errmsg": "OK"}
    if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
        raise Unprocessable(problem)
    # Tencent's report fields, read as Aliyun's (the vendor's serial number is our provider message id).
    reports = [
        {
            "biz_id": r["sid"],
            "phone_number": r["mobile"],
            "success": r.get("report_status") == "SUCCESS",
            "report_time": r.get("user_receive_time"),
            "err_code": r.get("errmsg", ""),
            "err_msg": r.get("description", ""),
        }
        for r in body
        if "sid" in r and "mobile" in r
    ]
    await deliveries.record_reports(session, shop_id, reports)
    return {"result": 0, "errmsg": "OK"}
