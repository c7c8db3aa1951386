"""Event handlers of the segmentation service: order events keep profiles current."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.orders import ORDER_EVENT_TYPES, OrderEventPayload
from laoke.contracts.topics import Topic
from laoke.kit.consumer import EventHandler
from laoke.kit.outbox import Outbox
from laoke.kit.service import ConsumerFactory, consumer_group
from services.segmentation.models import plumbing
from services.segmentation.repository import ProfileRepository
from services.segmentation.settings import SegmentationSettings


async def on_order_changed(session: AsyncSession, event: EventEnvelope) -> None:
    order = OrderEventPayload.model_validate(event.payload)
    profiles = ProfileRepository(session)
    await profiles.record_order(event.shop_id, order)
    await profiles.recompute(event.shop_id, order.customer_id)


def handlers(_outbox: Outbox) -> dict[str, EventHandler]:
    return dict.fromkeys(set(ORDER_EVENT_TYPES.values()), on_order_changed)


def consumers(settings: SegmentationSettings) -> ConsumerFactory:
    return consumer_group(settings, plumbing.processed_events, (Topic.ORDERS,), handlers)
