"""Feeds other services read with the internal credential (not routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from laoke.kit.bulk import csv_feed
from laoke.kit.db import SessionDep
from laoke.kit.service import CallerDep, OutboxDep
from services.loyalty import coupons
from services.loyalty.models import Coupon, Member

internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)


@internal.get("/expiries/{run}/balances.csv")
async def expiry_balances(
    run: Annotated[str, Path(pattern=r"^\d{8}T\d{6}$")], caller: CallerDep, request: Request
) -> StreamingResponse:
    """The current balance of every member an expiry run touched (`loyalty.points_expired`)."""
    query = (
        "SELECT m.customer_id, m.points_balance AS balance FROM loyalty.members m "
        "WHERE m.shop_id = $1 AND m.customer_id IN ("
        "  SELECT customer_id FROM loyalty.points_ledger"
        "  WHERE shop_id = $1 AND kind = 'expire' AND reference LIKE $2)"
    )
    return csv_feed(request.app.state.db, query, caller.shop_id, f"expire:{run}:%")


class MessageCouponsIn(BaseModel):
    template_id: str = Field(max_length=32)
    reference: str = Field(min_length=1, max_length=80)
    customer_ids: list[str] = Field(min_length=1, max_length=10_000)


class MessageCouponsOut(BaseModel):
    codes: dict[str, str]


@internal.post("/coupons/issue", response_model=MessageCouponsOut)
async def issue_for_messages(
    body: MessageCouponsIn, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> MessageCouponsOut:
    """Coupons messaging sends with a campaign or an automation: one per member and `reference`. A repeat
    of the same request (messaging retrying after a crash) returns the codes already issued. Customers
    who are not members, or are at the template's per-customer limit, get none."""
    template = await coupons.load_template(session, caller.shop_id, body.template_id, lock=True)
    wanted = list(dict.fromkeys(body.customer_ids))
    existing = dict(
        (
            await session.execute(
                select(Coupon.customer_id, Coupon.code).where(
                    Coupon.shop_id == caller.shop_id,
                    Coupon.template_id == template.id,
                    Coupon.reference == body.reference,
                    Coupon.customer_id.in_(wanted),
                )
            )
        ).all()
    )
    members = set(
        await session.scalars(
            select(Member.customer_id).where(Member.shop_id == caller.shop_id, Member.customer_id.in_(wanted))
        )
    )
    fresh = [c for c in wanted if c in members and c not in existing]
    issued, _ = await coupons.issue(
        session, outbox, template, fresh, source="message", reference=body.reference
    )
    return MessageCouponsOut(codes={**existing, **issued})
