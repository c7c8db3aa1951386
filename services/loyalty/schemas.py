"""Request and response models of the loyalty API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class MemberOut(BaseModel):
    customer_id: str = Field(examples=["cus_3f9a0c1e5b7d2a48"])
    points_available: int = Field(examples=[128])
    lifetime_earned: int = Field(examples=[1024])
    member_since: datetime
    updated_at: datetime
