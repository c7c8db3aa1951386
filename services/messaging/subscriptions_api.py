"""Outbound webhooks for third-party apps: subscribe a URL to events, see the delivery log, unsubscribe."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import delete, select

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound, Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.service import CallerDep
from services.messaging import targets, webhooks
from services.messaging.models import Subscription, WebhookDelivery
from services.messaging.schemas import (
    DeliveryOut,
    DeliveryPage,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)

router = APIRouter(prefix="/api/v1/subscriptions", tags=["webhooks"], responses=ERROR_RESPONSES)


def _out(subscription: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        url=subscription.url,
        events=list(subscription.events),
        active=subscription.active,
        consecutive_failures=subscription.consecutive_failures,
        disabled_reason=subscription.disabled_reason,
        created_at=subscription.created_at,
        disabled_at=subscription.disabled_at,
    )


async def _load(session: SessionDep, shop_id: str, subscription_id: str) -> Subscription:
    subscription = await session.get(Subscription, (shop_id, subscription_id))
    if subscription is None:
        raise NotFound(f"subscription {subscription_id} not found")
    return subscription


@router.post(
    "",
    response_model=SubscriptionCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe a URL to the shop's events (outbound webhooks)",
    description="Deliveries are POSTed as JSON `{event_id, type, shop_id, occurred_at, payload}` with "
    "`X-Laoke-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + '.' + body)>`; retried with backoff "
    "for a day, at least once (dedupe on `X-Laoke-Event-Id`). Event types: "
    + ", ".join(webhooks.EVENT_TYPES)
    + ', or "*".',
)
async def subscribe(
    body: SubscriptionIn, caller: CallerDep, session: SessionDep, request: Request
) -> SubscriptionCreated:
    unknown = sorted(set(body.events) - set(webhooks.EVENT_TYPES) - {"*"})
    if unknown:
        raise Unprocessable(f"unknown event type(s) {', '.join(unknown)}")
    if not request.app.state.settings.private_webhooks_allowed:
        try:
            targets.check_url(body.url)
        except targets.PrivateTarget as exc:
            raise Unprocessable(str(exc)) from exc
    subscription = Subscription(
        shop_id=caller.shop_id,
        id=new_id("sub"),
        url=body.url,
        events=sorted(set(body.events)),
        secret=secrets.token_hex(24),
        active=True,
        consecutive_failures=0,
        created_at=clock.now(),
    )
    session.add(subscription)
    await session.flush()
    webhooks.forget(caller.shop_id)
    return SubscriptionCreated(**_out(subscription).model_dump(), secret=subscription.secret)


@router.get("", response_model=SubscriptionList, summary="The shop's subscriptions")
async def list_subscriptions(caller: CallerDep, session: SessionDep) -> SubscriptionList:
    rows = await session.scalars(
        select(Subscription).where(Subscription.shop_id == caller.shop_id).order_by(Subscription.created_at)
    )
    return SubscriptionList(items=[_out(s) for s in rows])


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryPage,
    summary="The delivery log of a subscription, newest first",
)
async def deliveries(
    subscription_id: str,
    caller: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryPage:
    await _load(session, caller.shop_id, subscription_id)
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.shop_id == caller.shop_id, WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return DeliveryPage(
        items=[
            DeliveryOut(
                id=d.id,
                event_id=d.event_id,
                event_type=d.event_type,
                status=d.status,
                attempts=d.attempts,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                next_attempt_at=d.next_attempt_at,
                created_at=d.created_at,
                delivered_at=d.delivered_at,
            )
            for d in rows
        ]
    )


@router.delete(
    "/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Unsubscribe (pending deliveries are dropped)",
)
async def unsubscribe(subscription_id: str, caller: CallerDep, session: SessionDep) -> Response:
    await _load(session, caller.shop_id, subscription_id)
    await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.shop_id == caller.shop_id,
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == "pending",
        )
    )
    await session.execute(
        delete(Subscription).where(Subscription.shop_id == caller.shop_id, Subscription.id == subscription_id)
    )
    webhooks.forget(caller.shop_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
