"""Feedback tickets (客户反馈管理): complaints, suggestions, return problems and 疑难件 follow-ups,
linked to a buyer and an order, worked from open to resolved."""

from __future__ import annotations

import statistics
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import func, select

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.ids import new_id
from laoke.kit.service import CallerDep
from services.messaging.models import Feedback
from services.messaging.schemas import (
    FeedbackIn,
    FeedbackNote,
    FeedbackOut,
    FeedbackPage,
    FeedbackPatch,
    FeedbackStatus,
)

router = APIRouter(prefix="/api/v1/feedback", tags=["feedback"], responses=ERROR_RESPONSES)


def _hours(ticket: Feedback) -> float | None:
    if ticket.resolved_at is None:
        return None
    return round((ticket.resolved_at - ticket.created_at).total_seconds() / 3600, 2)


def _out(ticket: Feedback) -> FeedbackOut:
    return FeedbackOut(
        id=ticket.id,
        kind=ticket.kind,
        subject=ticket.subject,
        customer_id=ticket.customer_id,
        order_id=ticket.order_id,
        status=ticket.status,  # type: ignore[arg-type]
        assignee=ticket.assignee,
        notes=[FeedbackNote.model_validate(n) for n in ticket.notes],
        created_at=ticket.created_at,
        resolved_at=ticket.resolved_at,
        hours_to_resolve=_hours(ticket),
    )


@router.post(
    "", response_model=FeedbackOut, status_code=status.HTTP_201_CREATED, summary="Open a feedback ticket"
)
async def create_feedback(body: FeedbackIn, caller: CallerDep, session: SessionDep) -> FeedbackOut:
    now = clock.now()
    ticket = Feedback(
        shop_id=caller.shop_id,
        id=new_id("fbk"),
        customer_id=body.customer_id,
        order_id=body.order_id,
        kind=body.kind,
        subject=body.subject,
        status="open",
        assignee=body.assignee,
        notes=[{"at": now.isoformat(), "text": body.note}] if body.note else [],
        created_at=now,
    )
    session.add(ticket)
    await session.flush()
    return _out(ticket)


@router.get(
    "", response_model=FeedbackPage, summary="Tickets, newest first, with counts and time to resolution"
)
async def list_feedback(
    caller: CallerDep,
    session: SessionDep,
    status_is: Annotated[FeedbackStatus | None, Query(alias="status")] = None,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FeedbackPage:
    query = select(Feedback).where(Feedback.shop_id == caller.shop_id)
    if status_is is not None:
        query = query.where(Feedback.status == status_is)
    if customer_id is not None:
        query = query.where(Feedback.customer_id == customer_id)
    rows = await session.scalars(query.order_by(Feedback.created_at.desc()).limit(limit))
    counts = dict(
        (
            await session.execute(
                select(Feedback.status, func.count())
                .where(Feedback.shop_id == caller.shop_id)
                .group_by(Feedback.status)
            )
        ).all()
    )
    resolved = await session.scalars(
        select(Feedback).where(Feedback.shop_id == caller.shop_id, Feedback.resolved_at.is_not(None))
    )
    hours = [h for t in resolved if (h := _hours(t)) is not None]
    return FeedbackPage(
        items=[_out(t) for t in rows],
        counts={s: int(counts.get(s, 0)) for s in ("open", "in_progress", "resolved")},
        median_hours_to_resolve=statistics.median(hours) if hours else None,
    )


@router.patch(
    "/{feedback_id}", response_model=FeedbackOut, summary="Move a ticket on: status, assignee, a note"
)
async def patch_feedback(
    feedback_id: str, body: FeedbackPatch, caller: CallerDep, session: SessionDep
) -> FeedbackOut:
    ticket = await session.get(Feedback, (caller.shop_id, feedback_id), with_for_update=True)
    if ticket is None:
        raise NotFound(f"feedback {feedback_id} not found")
    now = clock.now()
    if body.status is not None and body.status != ticket.status:
        ticket.status = body.status
        ticket.resolved_at = now if body.status == "resolved" else None
    if body.assignee is not None:
        ticket.assignee = body.assignee
    if body.note:
        ticket.notes = [*ticket.notes, {"at": now.isoformat(), "text": body.note}]
    await session.flush()
    return _out(ticket)
