"""Campaigns: draft, launch, pause, resume, cancel, and the report of what each one earned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import select

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.ids import new_id
from laoke.kit.money import from_fen
from laoke.kit.paging import newest_first, split_page
from laoke.kit.segments import segment_size
from laoke.kit.service import CallerDep
from services.messaging import campaigns
from services.messaging.models import Campaign
from services.messaging.schemas import CampaignIn, CampaignList, CampaignOut, CampaignPatch, Lift

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"], responses=ERROR_RESPONSES)


async def _load(session: SessionDep, shop_id: str, campaign_id: str, *, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.shop_id == shop_id, Campaign.id == campaign_id)
    campaign = await session.scalar(query.with_for_update() if lock else query)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


async def _out(session: SessionDep, campaign: Campaign) -> CampaignOut:
    report = await campaigns.report(session, campaign)
    counts = report.statuses
    rate, base, difference, low, high = campaigns.lift(
        report.converted, campaign.targeted, report.holdout_converted, campaign.holdout
    )
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        segment_id=campaign.segment_id,
        channel=campaign.channel,  # type: ignore[arg-type]
        template_id=campaign.template_id,
        variants_by_tier=campaign.variants_by_tier,
        coupon_template_id=campaign.coupon_template_id,
        holdout_percent=campaign.holdout_percent,
        attribution_days=campaign.attribution_days,
        status=campaign.status,
        failure_reason=campaign.failure_reason,
        schedule_at=campaign.schedule_at,
        launched_at=campaign.launched_at,
        snapshot_at=campaign.snapshot_at,
        completed_at=campaign.completed_at,
        targeted=campaign.targeted,
        holdout=campaign.holdout,
        queued=counts.get("queued", 0) + counts.get("paused", 0) + counts.get("sending", 0),
        suppressed=counts.get("suppressed", 0),
        suppressed_by=report.suppressed_by,
        deferred=report.deferred,
        sent=counts.get("sent", 0) + counts.get("delivered", 0),
        delivered=counts.get("delivered", 0),
        failed=counts.get("failed", 0),
        cancelled=counts.get("cancelled", 0),
        converted=report.converted,
        revenue=from_fen(report.revenue_fen),
        holdout_converted=report.holdout_converted,
        attribution=Lift(
            conversion_rate=rate, holdout_conversion_rate=base, lift=difference, ci95_low=low, ci95_high=high
        ),
        created_at=campaign.created_at,
    )


@router.post(
    "",
    response_model=CampaignOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a campaign (a draft)",
    description="A message to a segment on one channel: one template, or a template per tier "
    "(`variants_by_tier`, `*` for the rest). Optional: a coupon per recipient, a schedule, a random "
    "holdout that gets nothing (to measure lift) and the attribution window.",
)
async def create_campaign(
    body: CampaignIn, request: Request, caller: CallerDep, session: SessionDep
) -> CampaignOut:
    await campaigns.check_templates(session, caller.shop_id, body)
    await segment_size(request.app.state.settings, caller.shop_id, body.segment_id)
    campaign = Campaign(
        shop_id=caller.shop_id,
        id=new_id("cmp"),
        status="draft",
        targeted=0,
        holdout=0,
        created_at=clock.now(),
        **body.model_dump(),
    )
    session.add(campaign)
    await session.flush()
    return await _out(session, campaign)


@router.get(
    "",
    response_model=CampaignList,
    summary="The shop's campaigns, newest first",
    description="`limit` at a time (each with its report); `next_cursor` gives the next page.",
)
async def list_campaigns(
    caller: CallerDep,
    session: SessionDep,
    segment_id: Annotated[
        str | None,
        Query(
            max_length=32, examples=["seg_5d1f0c2b9a7e4c31"], description="Only the campaigns to this segment"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CampaignList:
    query = select(Campaign).where(Campaign.shop_id == caller.shop_id)
    if segment_id is not None:
        query = query.where(Campaign.segment_id == segment_id)
    query = newest_first(query, Campaign.created_at, Campaign.id, limit, cursor)
    rows, next_cursor = split_page(list(await session.scalars(query)), limit, lambda c: (c.created_at, c.id))
    return CampaignList(items=[await _out(session, c) for c in rows], next_cursor=next_cursor)


@router.get(
    "/{campaign_id}",
    response_model=CampaignOut,
    summary="A campaign: status, counts, conversions, revenue and lift over the holdout (营销效果分析)",
)
async def get_campaign(campaign_id: str, caller: CallerDep, session: SessionDep) -> CampaignOut:
    return await _out(session, await _load(session, caller.shop_id, campaign_id))


@router.patch(
    "/{campaign_id}",
    response_model=CampaignOut,
    summary="Change a draft or a scheduled campaign before its audience is taken",
    description="Name, segment, channel, templates, coupon, send time, holdout, attribution window: a field "
    "left out keeps its value. 409 once the audience has been taken (sending, completed, cancelled). The "
    "result is checked as a new campaign is; a scheduled campaign's new segment must have members.",
)
async def update_campaign(
    campaign_id: str, body: CampaignPatch, request: Request, caller: CallerDep, session: SessionDep
) -> CampaignOut:
    campaign = await _load(session, caller.shop_id, campaign_id, lock=True)
    await campaigns.change(session, request.app.state.settings, campaign, body.model_dump(exclude_unset=True))
    await session.flush()
    return await _out(session, campaign)


@router.post(
    "/{campaign_id}/launch",
    response_model=CampaignOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Launch a draft: the audience is snapshotted at `schedule_at` (now when unset), then sent",
    description="An unknown or empty segment is refused here (422 / 409). The snapshot and sending run in "
    "the background; follow them on `GET /api/v1/campaigns/{id}`.",
)
async def launch(campaign_id: str, request: Request, caller: CallerDep, session: SessionDep) -> CampaignOut:
    campaign = await _load(session, caller.shop_id, campaign_id, lock=True)
    await campaigns.launch(session, request.app.state.settings, campaign)
    await session.flush()
    return await _out(session, campaign)


@router.post(
    "/{campaign_id}/pause", response_model=CampaignOut, summary="Pause sending; queued messages wait"
)
async def pause(campaign_id: str, caller: CallerDep, session: SessionDep) -> CampaignOut:
    campaign = await _load(session, caller.shop_id, campaign_id, lock=True)
    await campaigns.pause(session, campaign)
    return await _out(session, campaign)


@router.post("/{campaign_id}/resume", response_model=CampaignOut, summary="Resume a paused campaign")
async def resume(campaign_id: str, caller: CallerDep, session: SessionDep) -> CampaignOut:
    campaign = await _load(session, caller.shop_id, campaign_id, lock=True)
    await campaigns.resume(session, campaign)
    return await _out(session, campaign)


@router.post("/{campaign_id}/cancel", response_model=CampaignOut, summary="Cancel; nothing more is sent")
async def cancel(campaign_id: str, caller: CallerDep, session: SessionDep) -> CampaignOut:
    campaign = await _load(session, caller.shop_id, campaign_id, lock=True)
    await campaigns.cancel(session, campaign)
    return await _out(session, campaign)
