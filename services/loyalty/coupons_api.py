"""Coupon templates, issuing coupons (to customers or a segment), and a member's coupons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func, select

from laoke.kit import clock
from laoke.kit.db import ReadSessionDep, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Conflict, NotFound, Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.money import from_fen, to_fen
from laoke.kit.paging import newest_first, split_page
from laoke.kit.service import CallerDep, OutboxDep
from laoke.kit.settings import ServiceSettings
from services.loyalty import coupons
from services.loyalty.models import Coupon, CouponFlag, CouponTemplate, Member
from services.loyalty.schemas import (
    COUPON_TERMS,
    CouponFlagList,
    CouponFlagOut,
    CouponFlagReason,
    CouponList,
    CouponOut,
    CouponTemplateIn,
    CouponTemplateList,
    CouponTemplateOut,
    CouponTemplatePatch,
    IssueIn,
    IssueOut,
)

router = APIRouter(tags=["coupons"], responses=ERROR_RESPONSES)
SHOWN_CODES = 1000


async def _template_out(session: SessionDep, template: CouponTemplate) -> CouponTemplateOut:
    flagged: dict[str, int] = dict(
        (
            await session.execute(
                select(CouponFlag.reason, func.count())
                .where(CouponFlag.shop_id == template.shop_id, CouponFlag.template_id == template.id)
                .group_by(CouponFlag.reason)
            )
        ).all()
    )
    return CouponTemplateOut(
        id=template.id,
        **_template_in(template).model_dump(),
        issued=template.issued_count,
        redeemed=template.redeemed_count,
        revenue=from_fen(template.revenue_fen),
        reuses_flagged=flagged.get("reused", 0),
        flagged=flagged,  # type: ignore[arg-type]
    )


def _template_in(template: CouponTemplate) -> CouponTemplateIn:
    """A stored template as the form it was created with: what the API shows of it, and what a change
    is merged into to be checked as a new template is."""
    return CouponTemplateIn.model_construct(
        name=template.name,
        kind=template.kind,
        amount=from_fen(template.amount_fen) if template.amount_fen is not None else None,
        threshold=from_fen(template.threshold_fen) if template.threshold_fen is not None else None,
        percent_off=template.percent_off,
        valid_from=template.valid_from,
        valid_until=template.valid_until,
        valid_days=template.valid_days,
        total_limit=template.total_limit,
        per_customer_limit=template.per_customer_limit,
    )


def _set_terms(template: CouponTemplate, terms: CouponTemplateIn) -> None:
    """Everything of a checked template onto the stored one but `total_limit`, which a PATCH may set
    where a new template may not (to what is issued: 停发)."""
    template.name, template.kind, template.percent_off = terms.name, terms.kind, terms.percent_off
    template.amount_fen = to_fen(terms.amount) if terms.amount is not None else None
    template.threshold_fen = to_fen(terms.threshold) if terms.threshold is not None else None
    template.valid_from, template.valid_until = terms.valid_from, terms.valid_until
    template.valid_days, template.per_customer_limit = terms.valid_days, terms.per_customer_limit


@router.post(
    "/api/v1/coupons/templates",
    response_model=CouponTemplateOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a coupon template (优惠券)",
)
async def create_template(
    body: CouponTemplateIn, caller: CallerDep, session: SessionDep
) -> CouponTemplateOut:
    template = CouponTemplate(
        id=new_id("cpt"), shop_id=caller.shop_id, issued_count=0, redeemed_count=0, revenue_fen=0
    )
    _set_terms(template, body)
    template.total_limit = body.total_limit
    session.add(template)
    await session.flush()
    return await _template_out(session, template)


@router.get(
    "/api/v1/coupons/templates", response_model=CouponTemplateList, summary="Coupon templates and stats"
)
async def list_templates(caller: CallerDep, session: SessionDep) -> CouponTemplateList:
    rows = await session.scalars(
        select(CouponTemplate)
        .where(CouponTemplate.shop_id == caller.shop_id)
        .order_by(CouponTemplate.created_at)
    )
    return CouponTemplateList(items=[await _template_out(session, t) for t in rows])


@router.get(
    "/api/v1/coupons/templates/{template_id}",
    response_model=CouponTemplateOut,
    summary="A coupon template with its redemption report (issued, redeemed, revenue, flagged uses)",
)
async def get_template(template_id: str, caller: CallerDep, session: SessionDep) -> CouponTemplateOut:
    return await _template_out(session, await coupons.load_template(session, caller.shop_id, template_id))


@router.patch(
    "/api/v1/coupons/templates/{template_id}",
    response_model=CouponTemplateOut,
    summary="Rename a coupon template, stop or limit its issuing, or end new coupons' validity earlier",
    description="`total_limit` at the number already issued stops issuing (停发): rewards and `issue` "
    "answer 409 `limit_reached`, lotteries give no prize, and messages carrying the coupon are not sent; "
    "it may not go below that number (422). Coupons already issued keep their terms.",
)
async def patch_template(
    template_id: str, body: CouponTemplatePatch, caller: CallerDep, session: SessionDep
) -> CouponTemplateOut:
    # Locked as an issue locks it: a limit checked against a count that an issue is raising meanwhile.
    template = await coupons.load_template(session, caller.shop_id, template_id, lock=True)
    changes = body.model_dump(exclude_unset=True)
    if template.issued_count and set(changes) & set(COUPON_TERMS):
        raise Conflict(
            f"{template.issued_count} coupons of this template are issued and keep its terms: "
            "make a new template for new terms"
        )
    limit = changes.get("total_limit")
    if limit is not None and limit < template.issued_count:
        raise Unprocessable(f"total_limit: below the {template.issued_count} already issued")
    # total_limit may be set to what is issued (0 before any: 停发), which a new template may not have.
    terms = _template_in(template).model_dump() | changes | {"total_limit": None}
    if changes.get("kind", template.kind) != template.kind:
        # What only the old kind had goes, unless given again: a 满减 made percent-off keeps no amount.
        for name in {"amount", "threshold", "percent_off"} - set(changes):
            terms[name] = None
    try:
        checked = CouponTemplateIn.model_validate(terms)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    _set_terms(template, checked)
    if "total_limit" in changes:
        template.total_limit = limit
    await session.flush()
    return await _template_out(session, template)


@router.get(
    "/api/v1/coupons/templates/{template_id}/flags",
    response_model=CouponFlagList,
    summary="Orders that used a template's coupons against its rules, newest first",
    description="A code spent twice (`reused`), used outside its validity (`expired`, `not_yet_valid`), "
    "under a 满减 threshold (`below_threshold`) or by someone other than its holder (`other_buyer`): what "
    "the shop's checkout let through, for the shop owner to look into. Filter with `reason`.",
)
async def template_flags(
    template_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    reason: CouponFlagReason | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,19}$", description="Newest first")] = None,
) -> CouponFlagList:
    await coupons.load_template(session, caller.shop_id, template_id)
    query = select(CouponFlag).where(
        CouponFlag.shop_id == caller.shop_id, CouponFlag.template_id == template_id
    )
    if reason is not None:
        query = query.where(CouponFlag.reason == reason)
    if cursor:
        query = query.where(CouponFlag.id < int(cursor))
    rows = list(await session.scalars(query.order_by(CouponFlag.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return CouponFlagList(
        items=[
            CouponFlagOut(
                code=f.code,
                order_id=f.order_id,
                reason=f.reason,  # type: ignore[arg-type]
                holder_id=f.holder_id,
                buyer_id=f.buyer_id,
                flagged_at=f.flagged_at,
            )
            for f in rows
        ],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )


@router.post(
    "/api/v1/coupons/templates/{template_id}/issue",
    response_model=IssueOut,
    summary="Issue coupons to customers or to a segment",
    description="One coupon per customer, with a code unique in the shop. `segment_id` is resolved into its "
    "current members through the segmentation service. Customers at the per-customer limit are skipped "
    "and listed; beyond the total limit nothing is issued (409 `limit_reached`). Customers must be members "
    "(have an order or have signed in): unknown ids are a 422 naming them.",
)
async def issue(
    template_id: str,
    body: IssueIn,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
) -> IssueOut:
    template = await coupons.load_template(session, caller.shop_id, template_id, lock=True)
    if body.segment_id is not None:
        settings: ServiceSettings = request.app.state.settings
        customers = await coupons.segment_members(settings, caller.shop_id, body.segment_id)
    else:
        customers = list(dict.fromkeys(body.customer_ids or []))
    known = set(
        await session.scalars(
            select(Member.customer_id).where(
                Member.shop_id == caller.shop_id, Member.customer_id.in_(customers)
            )
        )
    )
    unknown = [c for c in customers if c not in known]
    if unknown and body.customer_ids is not None:
        raise Unprocessable(
            f"unknown customers: {', '.join(unknown[:10])}" + (" …" if len(unknown) > 10 else "")
        )
    issued, skipped = await coupons.issue(session, outbox, template, [c for c in customers if c in known])
    return IssueOut(
        issued=len(issued),
        skipped_at_limit=skipped,
        codes=dict(list(issued.items())[:SHOWN_CODES]),
    )


@router.get(
    "/api/v1/loyalty/members/{customer_id}/coupons",
    response_model=CouponList,
    summary="A member's coupons, newest first",
    description="`limit` at a time; `next_cursor` gives the next page.",
)
async def member_coupons(
    customer_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CouponList:
    member = await session.scalar(
        select(Member.customer_id).where(Member.shop_id == caller.shop_id, Member.customer_id == customer_id)
    )
    if member is None:
        raise NotFound(f"member {customer_id} not found")
    query = (
        select(Coupon, CouponTemplate.name)
        .join(
            CouponTemplate,
            (CouponTemplate.shop_id == Coupon.shop_id) & (CouponTemplate.id == Coupon.template_id),
        )
        .where(Coupon.shop_id == caller.shop_id, Coupon.customer_id == customer_id)
    )
    query = newest_first(query, Coupon.issued_at, Coupon.code, limit, cursor)
    rows, next_cursor = split_page(
        list(await session.execute(query)), limit, lambda row: (row[0].issued_at, row[0].code)
    )
    now = clock.now()
    return CouponList(
        next_cursor=next_cursor,
        items=[
            CouponOut(
                code=c.code,
                template_id=c.template_id,
                name=name,
                status="redeemed"
                if c.redeemed_order_id
                else "expired"
                if coupons.expired(c, now)
                else "issued",
                issued_at=c.issued_at,
                expires_at=c.expires_at,
                redeemed_order_id=c.redeemed_order_id,
                redeemed_at=c.redeemed_at,
            )
            for c, name in rows
        ],
    )
