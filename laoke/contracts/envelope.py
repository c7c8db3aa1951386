"""The one JSON envelope every event travels in.

`event_id` is the idempotency key consumers dedupe on. Consumers must ignore fields and event types
they do not know, so producers can add both without coordinating a release.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def event_key(shop_id: str, customer_id: str) -> str:
    """All events of one buyer share a key, hence a partition, hence an order."""
    return f"{shop_id}:{customer_id}"


class EventEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(examples=["order.paid"])
    version: int = 1
    shop_id: str
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str | None = None
    producer: str
    payload: dict[str, Any] = Field(default_factory=dict)
