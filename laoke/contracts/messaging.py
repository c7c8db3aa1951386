"""Messaging events (`laoke.messaging.v1`) other services consume."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

CONSENT_CHANGED = "consent.changed"


class ConsentChangedPayload(BaseModel):
    """A buyer opted in or out of a channel (an edit, an SMS reply of 退订/TD, an e-mail unsubscribe)."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    channel: str  # sms, email, inapp
    subscribed: bool
    source: str = "api"
