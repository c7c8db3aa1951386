"""Channels, the shop's protection policy, templates, consent, the in-app inbox and delivery records."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import ValidationError
from sqlalchemy import and_, delete, func, select, text

from laoke.kit import clock
from laoke.kit.context import SHOP_HEADER
from laoke.kit.db import ReadSessionDep, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Conflict, NotFound, Unprocessable
from laoke.kit.ids import decode_cursor, encode_cursor, new_id
from laoke.kit.pii import mask_email, mask_phone
from laoke.kit.service import CallerDep, OutboxDep
from services.messaging import consent, policy, templates
from services.messaging.channels import CONFIG_MODELS, Channel
from services.messaging.models import Automation, ChannelConfig, Consent, Message, Template
from services.messaging.policy import ShopPolicy
from services.messaging.schemas import (
    ChannelList,
    ChannelName,
    ChannelOut,
    ConsentIn,
    ConsentOut,
    InboxMessage,
    InboxPage,
    MessageOut,
    MessagePage,
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateList,
    TemplateOut,
)

router = APIRouter(responses=ERROR_RESPONSES)
CustomerId = Annotated[str, Path(max_length=32)]
SECRET_FIELDS = frozenset({"access_key_secret"})
# How a stored secret is shown. Sent back as it was shown (a settings form saved as it came), it means
# "keep the stored one", as leaving the field out does: stored, it would break every send.
SECRET_SHOWN = "********"  # noqa: S105 - the mask, not a secret


# -- channels and policy --------------------------------------------------------------------------
def _channel_out(channel: str, row: ChannelConfig | None, request: Request) -> ChannelOut:
    out = _stored_channel(channel, row)
    if channel == Channel.SMS:
        shop_id = row.shop_id if row else request.headers.get(SHOP_HEADER, "")
        provider = str((row.settings if row else {}).get("provider", "aliyun"))
        out.callback_url = consent.sms_callback_url(request.app.state.settings, shop_id, provider)
    return out


def _stored_channel(channel: str, row: ChannelConfig | None) -> ChannelOut:
    if row is None:
        return ChannelOut(
            channel=channel,
            configured=channel == Channel.INAPP,
            enabled=channel == Channel.INAPP,
            settings={},
        )  # type: ignore[arg-type]
    shown = {k: (SECRET_SHOWN if k in SECRET_FIELDS and v else v) for k, v in row.settings.items()}
    return ChannelOut(channel=channel, configured=True, enabled=row.enabled, settings=shown)  # type: ignore[arg-type]


@router.get(
    "/api/v1/messaging/channels",
    response_model=ChannelList,
    tags=["messaging"],
    summary="The shop's channels",
)
async def list_channels(caller: CallerDep, session: SessionDep, request: Request) -> ChannelList:
    rows = {
        r.channel: r
        for r in await session.scalars(select(ChannelConfig).where(ChannelConfig.shop_id == caller.shop_id))
    }
    return ChannelList(items=[_channel_out(c.value, rows.get(c.value), request) for c in Channel])


@router.put(
    "/api/v1/messaging/channels/{channel}",
    response_model=ChannelOut,
    tags=["messaging"],
    summary="Configure a channel (SMS vendor keys and signature, e-mail sender, in-app on/off)",
    description="The body depends on the channel: `sms` takes the Aliyun access key, the approved "
    "signature (签名) and a rate; `email` the sender; `inapp` only `enabled`. The access key secret is "
    "write-only: leave it out, or send it back as shown (`********`), to keep the stored one.",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"type": "object"},
                    "examples": {
                        name: {"value": model.model_config["json_schema_extra"]["examples"][0]}  # type: ignore[index]
                        for name, model in CONFIG_MODELS.items()
                    },
                }
            },
            "required": True,
        }
    },
)
async def put_channel(
    channel: ChannelName, request: Request, caller: CallerDep, session: SessionDep
) -> ChannelOut:
    try:
        raw = await request.json()
    except ValueError as exc:
        raise Unprocessable("the body must be a JSON object") from exc
    if not isinstance(raw, dict):
        raise Unprocessable("the body must be a JSON object")
    row = await session.get(ChannelConfig, (caller.shop_id, channel))
    for secret in SECRET_FIELDS:
        if raw.get(secret) == SECRET_SHOWN:
            raw.pop(secret)
    if channel == Channel.SMS and not raw.get("access_key_secret") and row is not None:
        raw["access_key_secret"] = row.settings.get("access_key_secret")
    try:
        config = CONFIG_MODELS[channel].model_validate(raw)
    except ValidationError as exc:
        raise Unprocessable(
            "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        ) from exc
    if channel == Channel.SMS and not getattr(config, "access_key_secret", None):
        raise Unprocessable("access_key_secret is needed the first time the SMS channel is configured")
    stored: dict[str, Any] = config.model_dump(mode="json", exclude={"enabled"})
    if row is None:
        row = ChannelConfig(shop_id=caller.shop_id, channel=channel, enabled=config.enabled, settings=stored)  # type: ignore[attr-defined]
        session.add(row)
    else:
        row.enabled, row.settings, row.updated_at = config.enabled, stored, clock.now()  # type: ignore[attr-defined]
    await session.flush()
    return _channel_out(channel, row, request)


@router.get(
    "/api/v1/messaging/policy",
    response_model=ShopPolicy,
    tags=["messaging"],
    summary="Frequency cap and quiet hours",
)
async def get_policy(caller: CallerDep, session: SessionDep) -> ShopPolicy:
    return await policy.load(session, caller.shop_id)


@router.put(
    "/api/v1/messaging/policy",
    response_model=ShopPolicy,
    tags=["messaging"],
    summary="Set the frequency cap and quiet hours",
    description="Marketing (campaigns, birthday, win-back) is capped at `cap_messages` per buyer in "
    "`cap_days` across channels and deferred out of quiet hours in the shop's time zone. Transactional "
    "messages (催付, shipment) are neither capped nor deferred; nothing is sent against an opt-out.",
)
async def put_policy(body: ShopPolicy, caller: CallerDep, session: SessionDep) -> ShopPolicy:
    if (body.quiet_start is None) != (body.quiet_end is None):
        raise Unprocessable("give both quiet_start and quiet_end, or neither")
    return await policy.save(session, caller.shop_id, body)


# -- templates ------------------------------------------------------------------------------------
def _template_out(template: Template) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        name=template.name,
        channel=template.channel,  # type: ignore[arg-type]
        subject=template.subject,
        body=template.body,
        provider_template_code=template.provider_template_code,
        variables=sorted(templates.used_variables(template.subject, template.body)),
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


async def load_template(
    session: SessionDep, shop_id: str, template_id: str, *, lock: bool = False
) -> Template:
    template = await session.get(Template, (shop_id, template_id), with_for_update=lock or None)
    if template is None:
        raise NotFound(f"template {template_id} not found")
    return template


_CAMPAIGNS_USING = text(
    """
    SELECT name FROM messaging.campaigns c
    WHERE shop_id = :shop AND status IN ('draft', 'scheduled', 'paused', 'sending')
      AND (template_id = :template
           OR EXISTS (SELECT 1 FROM jsonb_each_text(c.variants_by_tier) v WHERE v.value = :template))
    ORDER BY created_at
    """
)


async def _template_users(session: SessionDep, shop_id: str, template_id: str) -> list[str]:
    """What still sends with a template: campaigns not finished (by their name) and automations that
    are on (by their kind). Campaigns and automations take the template `FOR SHARE` when they name it,
    so one saved meanwhile is seen here once the template's lock is held."""
    campaigns = await session.scalars(_CAMPAIGNS_USING, {"shop": shop_id, "template": template_id})
    automations = await session.scalars(
        select(Automation.kind).where(
            Automation.shop_id == shop_id, Automation.enabled, Automation.template_id == template_id
        )
    )
    return [f"campaign {name}" for name in campaigns] + [f"automation {kind}" for kind in automations]


@router.post(
    "/api/v1/templates",
    response_model=TemplateOut,
    status_code=status.HTTP_201_CREATED,
    tags=["templates"],
    summary="Create a message template",
    description="Variables in `{{ }}`: " + ", ".join(templates.VARIABLES) + ". Anything else, a syntax "
    "error or an attempt to reach outside the sandbox is a 422.",
)
async def create_template(body: TemplateIn, caller: CallerDep, session: SessionDep) -> TemplateOut:
    templates.check(body.subject, body.body)
    now = clock.now()
    template = Template(
        shop_id=caller.shop_id, id=new_id("tpl"), created_at=now, updated_at=now, **body.model_dump()
    )
    session.add(template)
    await session.flush()
    return _template_out(template)


@router.get(
    "/api/v1/templates", response_model=TemplateList, tags=["templates"], summary="The shop's templates"
)
async def list_templates(caller: CallerDep, session: SessionDep) -> TemplateList:
    rows = await session.scalars(
        select(Template).where(Template.shop_id == caller.shop_id).order_by(Template.created_at.desc())
    )
    return TemplateList(items=[_template_out(t) for t in rows])


@router.get(
    "/api/v1/templates/{template_id}", response_model=TemplateOut, tags=["templates"], summary="A template"
)
async def get_template(template_id: str, caller: CallerDep, session: SessionDep) -> TemplateOut:
    return _template_out(await load_template(session, caller.shop_id, template_id))


@router.put(
    "/api/v1/templates/{template_id}",
    response_model=TemplateOut,
    tags=["templates"],
    summary="Replace a template (messages already sent keep their text)",
)
async def put_template(
    template_id: str, body: TemplateIn, caller: CallerDep, session: SessionDep
) -> TemplateOut:
    template = await load_template(session, caller.shop_id, template_id)
    templates.check(body.subject, body.body)
    for field, value in body.model_dump().items():
        setattr(template, field, value)
    template.updated_at = clock.now()
    await session.flush()
    return _template_out(template)


@router.delete(
    "/api/v1/templates/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["templates"],
    summary="Delete a template",
    description="409 while a campaign that has not finished (draft, scheduled, paused, sending) or an "
    "automation that is on uses it, naming them: a campaign's messages would fail one by one. Messages "
    "already sent keep their text.",
)
async def delete_template(template_id: str, caller: CallerDep, session: SessionDep) -> Response:
    await load_template(session, caller.shop_id, template_id, lock=True)
    users = await _template_users(session, caller.shop_id, template_id)
    if users:
        raise Conflict(
            f"template {template_id} is still used by {', '.join(users)} (change or end them first)"
        )
    await session.execute(
        delete(Template).where(Template.shop_id == caller.shop_id, Template.id == template_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/v1/templates/preview",
    response_model=PreviewOut,
    tags=["templates"],
    summary="Render a template with sample values; SMS length and parts",
)
async def preview(body: PreviewIn, caller: CallerDep, session: SessionDep) -> PreviewOut:
    templates.check(body.subject, body.body)
    unknown = sorted(set(body.variables) - templates.VARIABLES.keys())
    if unknown:
        raise Unprocessable(f"unknown variable(s) {', '.join(unknown)}")
    values = {**templates.VARIABLES, **body.variables}
    rendered = templates.render(body.body, values)
    subject = templates.render(body.subject, values) if body.subject else None
    if body.channel == Channel.SMS:
        row = await session.get(ChannelConfig, (caller.shop_id, Channel.SMS))
        characters, parts = templates.sms_parts(rendered, row.settings.get("sign_name") if row else None)
        return PreviewOut(subject=None, body=rendered, characters=characters, sms_parts=parts)
    return PreviewOut(subject=subject, body=rendered, characters=len(rendered), sms_parts=None)


# -- consent --------------------------------------------------------------------------------------
async def _consent_out(session: SessionDep, shop_id: str, customer_id: str) -> ConsentOut:
    rows = await session.scalars(
        select(Consent).where(Consent.shop_id == shop_id, Consent.customer_id == customer_id)
    )
    choices = {c.value: True for c in Channel} | {r.channel: r.subscribed for r in rows}
    return ConsentOut(customer_id=customer_id, channels=choices)


@router.get(
    "/api/v1/customers/{customer_id}/consent",
    response_model=ConsentOut,
    tags=["consent"],
    summary="A buyer's consent per channel",
)
async def get_consent(customer_id: CustomerId, caller: CallerDep, session: SessionDep) -> ConsentOut:
    return await _consent_out(session, caller.shop_id, customer_id)


@router.put(
    "/api/v1/customers/{customer_id}/consent",
    response_model=ConsentOut,
    tags=["consent"],
    summary="Opt a buyer out of (or back into) a channel (退订)",
    description="Honoured at send time: messages already queued for the channel are suppressed too.",
)
async def put_consent(
    customer_id: CustomerId, body: ConsentIn, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> ConsentOut:
    await consent.set_consent(
        session, outbox, caller.shop_id, customer_id, body.channel, body.subscribed, "api"
    )
    return await _consent_out(session, caller.shop_id, customer_id)


# -- inbox and delivery records -------------------------------------------------------------------
@router.get(
    "/api/v1/inbox/{customer_id}",
    response_model=InboxPage,
    tags=["inbox"],
    summary="A buyer's in-app inbox (站内信), newest first",
)
async def inbox(
    customer_id: CustomerId,
    caller: CallerDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxPage:
    mine = and_(
        Message.shop_id == caller.shop_id,
        Message.customer_id == customer_id,
        Message.channel == Channel.INAPP,
        Message.status.in_(("sent", "delivered")),
    )
    rows = await session.scalars(
        select(Message).where(mine).order_by(Message.sent_at.desc(), Message.id.desc()).limit(limit)
    )
    unread = await session.scalar(select(func.count()).where(mine, Message.read_at.is_(None)))
    return InboxPage(
        unread=unread or 0,
        items=[
            InboxMessage(id=m.id, subject=m.subject, body=m.body or "", sent_at=m.sent_at, read_at=m.read_at)  # type: ignore[arg-type]
            for m in rows
        ],
    )


@router.post(
    "/api/v1/inbox/{customer_id}/messages/{message_id}/read",
    response_model=InboxMessage,
    tags=["inbox"],
    summary="Mark an in-app message read",
)
async def mark_read(
    customer_id: CustomerId, message_id: int, caller: CallerDep, session: SessionDep
) -> InboxMessage:
    message = await session.scalar(
        select(Message).where(
            Message.id == message_id,
            Message.shop_id == caller.shop_id,
            Message.customer_id == customer_id,
            Message.channel == Channel.INAPP,
            Message.status.in_(("sent", "delivered")),
        )
    )
    if message is None:
        raise NotFound(f"message {message_id} not found in this inbox")
    if message.read_at is None:
        message.read_at = clock.now()
    return InboxMessage(
        id=message.id,
        subject=message.subject,
        body=message.body or "",
        sent_at=message.sent_at,
        read_at=message.read_at,  # type: ignore[arg-type]
    )


@router.get(
    "/api/v1/messaging/messages",
    response_model=MessagePage,
    tags=["messaging"],
    summary="Delivery records: every message with its status and reason, newest first",
)
async def list_messages(
    caller: CallerDep,
    session: SessionDep,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    campaign_id: Annotated[str | None, Query(max_length=32)] = None,
    automation: Annotated[str | None, Query(max_length=32)] = None,
    status_is: Annotated[str | None, Query(alias="status", max_length=12)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> MessagePage:
    query = select(Message).where(Message.shop_id == caller.shop_id)
    for column, value in (
        (Message.customer_id, customer_id),
        (Message.campaign_id, campaign_id),
        (Message.automation, automation),
        (Message.status, status_is),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        parts = decode_cursor(cursor, 1)
        if parts is None or not parts[0].isdigit():
            raise Unprocessable("cursor is not one this API gave out")
        query = query.where(Message.id < int(parts[0]))
    rows = list(await session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    pii = caller.can("pii")

    def shown(m: Message) -> str | None:
        if pii or m.recipient is None or m.channel == Channel.INAPP:
            return m.recipient
        return mask_phone(m.recipient) if m.channel == Channel.SMS else mask_email(m.recipient)

    return MessagePage(
        items=[
            MessageOut(
                id=m.id,
                source=m.source,
                customer_id=m.customer_id,
                channel=m.channel,  # type: ignore[arg-type]
                status=m.status,
                reason=m.reason,
                recipient=shown(m),
                body=m.body,
                coupon_code=m.coupon_code,
                attempts=m.attempts,
                deferred=m.deferred,
                not_before=m.not_before,
                created_at=m.created_at,
                sent_at=m.sent_at,
                delivered_at=m.delivered_at,
            )
            for m in rows
        ],
        next_cursor=encode_cursor(str(rows[-1].id)) if more else None,
    )
