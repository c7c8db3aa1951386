"""Loyalty events (`laoke.loyalty.v1`): a member's points balance or tier changed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

POINTS_CHANGED = "points.changed"
TIER_CHANGED = "tier.changed"


class PointsChangedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: str
    delta: int
    kind: str  # the ledger entry kind: earn, redeem, reverse, expire, ...
    reference: str
    balance: int  # available points after the change


class TierChangedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: str
    from_level: int | None = None
    to_level: int
    tier_name: str
