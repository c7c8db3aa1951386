"""Buyer behaviour (favourites, add-to-cart, browsing) → `laoke.behaviour.v1` for segmentation.

Ingest only resolves who the buyer is and passes the fact on; it keeps no behaviour table of its own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from laoke.contracts.behaviour import BehaviourKind, BehaviourPayload
from laoke.contracts.customers import BuyerSnapshot
from laoke.contracts.envelope import event_key
from laoke.contracts.topics import Topic
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES
from laoke.kit.service import CallerDep, OutboxDep
from services.ingest.identity import IdentityResolver, buyer_keys, normalise_mobile, shop_settings
from services.ingest.schemas import BuyerIn, Channel

router = APIRouter(prefix="/api/v1/events", tags=["behaviour"], responses=ERROR_RESPONSES)


class BehaviourIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: BehaviourKind
    channel: Channel = "api"
    buyer: BuyerIn
    item_id: str | None = Field(default=None, max_length=128)
    item_title: str | None = Field(default=None, max_length=500)
    occurred_at: AwareDatetime


class BehaviourBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "type": "add_to_cart",
                            "channel": "taobao",
                            "buyer": {"external_id": "AAHk5d-EAAeGwJedwSHpsrOV"},
                            "item_id": "600012345678",
                            "item_title": "明前龙井 250g",
                            "occurred_at": "2026-11-22T20:15:00+08:00",
                        },
                        {
                            "type": "favorite_shop",
                            "channel": "taobao",
                            "buyer": {"external_id": "AAHk5d-EAAeGwJedwSHpsrOV"},
                            "occurred_at": "2026-11-22T20:16:00+08:00",
                        },
                    ]
                }
            ]
        },
    )

    events: Annotated[list[BehaviourIn], Field(min_length=1, max_length=500)]


class BehaviourAccepted(BaseModel):
    accepted: int
    customer_ids: list[str] = Field(description="The customer each event was attributed to, in order")


@router.post(
    "",
    response_model=BehaviourAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Record buyer behaviour (batch of up to 500)",
    description="`favorite_item`, `favorite_shop`, `add_to_cart`, `browse`. Each event is attributed to a "
    "customer (created on first sight, like an order's buyer) and published for segmentation. The batch "
    "is all or nothing: one invalid event refuses the whole batch with its index.",
)
async def record_behaviour(
    body: BehaviourBatch, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> BehaviourAccepted:
    settings = await shop_settings(session, caller.shop_id)
    resolver = IdentityResolver(session, outbox, caller.shop_id)
    customer_ids: list[str] = []
    for event in body.events:
        buyer = event.buyer
        customer_id = await resolver.resolve(
            buyer_keys(event.channel, buyer.external_id, buyer.email, buyer.mobile),
            merge_by_mobile=settings.merge_by_mobile,
        )
        customer_ids.append(customer_id)
        await outbox.add(
            session,
            topic=Topic.BEHAVIOUR,
            event_type=f"behaviour.{event.type.value}",
            shop_id=caller.shop_id,
            key=event_key(caller.shop_id, customer_id),
            occurred_at=event.occurred_at,
            payload=BehaviourPayload(
                customer_id=customer_id,
                kind=event.type,
                item_id=event.item_id,
                item_title=event.item_title,
                occurred_at=event.occurred_at,
                channel=event.channel,
                buyer=BuyerSnapshot(
                    external_id=buyer.external_id,
                    nick=buyer.nick,
                    email=buyer.email.strip().lower() if buyer.email else None,
                    mobile=normalise_mobile(buyer.mobile),
                ),
            ),
        )
    return BehaviourAccepted(accepted=len(body.events), customer_ids=customer_ids)
