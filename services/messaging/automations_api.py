"""Automations: which are on, on which channel and template, after what delay, with which coupon."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Unprocessable
from laoke.kit.service import CallerDep
from services.messaging import automations
from services.messaging.automations import DEFAULT_DELAY_MINUTES, DESCRIPTIONS, Kind
from services.messaging.models import Automation, Message, Template
from services.messaging.schemas import AutomationIn, AutomationList, AutomationOut

router = APIRouter(prefix="/api/v1/automations", tags=["automations"], responses=ERROR_RESPONSES)


def _out(kind: Kind, row: Automation | None, sent: int) -> AutomationOut:
    return AutomationOut(
        kind=kind.value,
        description=DESCRIPTIONS[kind],
        enabled=bool(row and row.enabled),
        channel=row.channel if row else None,  # type: ignore[arg-type]
        template_id=row.template_id if row else None,
        delay_minutes=row.delay_minutes if row else DEFAULT_DELAY_MINUTES.get(kind, 0),
        coupon_template_id=row.coupon_template_id if row else None,
        sent=sent,
    )


async def _sent(session: SessionDep, shop_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(Message.automation, func.count())
        .where(
            Message.shop_id == shop_id,
            Message.automation.is_not(None),
            Message.status.in_(("sent", "delivered")),
        )
        .group_by(Message.automation)
    )
    return {k: int(v) for k, v in rows.all()}


@router.get("", response_model=AutomationList, summary="Every automation kind and the shop's setting of it")
async def list_automations(caller: CallerDep, session: SessionDep) -> AutomationList:
    rows = {
        r.kind: r
        for r in await session.scalars(select(Automation).where(Automation.shop_id == caller.shop_id))
    }
    sent = await _sent(session, caller.shop_id)
    return AutomationList(items=[_out(k, rows.get(k.value), sent.get(k.value, 0)) for k in Kind])


@router.put(
    "/{kind}",
    response_model=AutomationOut,
    summary="Turn an automation on or off and set its channel, template, delay and coupon",
    description="Kinds: " + "; ".join(f"`{k.value}` — {d}" for k, d in DESCRIPTIONS.items()),
)
async def put_automation(
    kind: Kind, body: AutomationIn, caller: CallerDep, session: SessionDep
) -> AutomationOut:
    # FOR SHARE: a delete of the template waits for this automation and then sees it (api.py).
    template = await session.get(Template, (caller.shop_id, body.template_id), with_for_update={"read": True})
    if template is None:
        raise Unprocessable(f"template {body.template_id} not found")
    if template.channel != body.channel:
        raise Unprocessable(f"template {body.template_id} is for {template.channel}, not {body.channel}")
    delay = body.delay_minutes if body.delay_minutes is not None else DEFAULT_DELAY_MINUTES.get(kind, 0)
    row = await session.get(Automation, (caller.shop_id, kind.value))
    values = {
        "enabled": body.enabled,
        "channel": body.channel,
        "template_id": body.template_id,
        "delay_minutes": delay,
        "coupon_template_id": body.coupon_template_id,
        "updated_at": clock.now(),
    }
    if row is None:
        row = Automation(shop_id=caller.shop_id, kind=kind.value, **values)
        session.add(row)
    else:
        for field, value in values.items():
            setattr(row, field, value)
    await session.flush()
    automations.forget(caller.shop_id)
    return _out(kind, row, (await _sent(session, caller.shop_id)).get(kind.value, 0))
