"""Segmentation events (`laoke.segmentation.v1`): labels and segment membership that changed.

They are written set-based by SQL statements (services/segmentation/rfm.py, segments.py); these
models are the contract consumers (messaging's win-back and campaign automations) read them with.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

LIFECYCLE_CHANGED = "customer.lifecycle_changed"
RFM_CHANGED = "customer.rfm_changed"
SEGMENT_ENTERED = "segment.entered"
SEGMENT_EXITED = "segment.exited"


class LifecycleChangedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    customer_id: str
    from_lifecycle: str = Field(alias="from")
    to_lifecycle: str = Field(alias="to")


class RfmChangedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    customer_id: str
    from_segment: str = Field(alias="from")
    to_segment: str = Field(alias="to")
    r: int
    f: int
    m: int


class SegmentMembershipPayload(BaseModel):
    """`segment.entered` / `segment.exited`."""

    model_config = ConfigDict(extra="ignore")

    segment_id: str
    customer_id: str


PROFILE_UPDATED = "customer.profile_updated"
# A profile with all of these is complete (loyalty's profile-completion bonus, engagement tasks).
PROFILE_COMPLETE_FIELDS = ("name", "gender", "birthday", "mobile", "province", "city")


class ProfileUpdatedPayload(BaseModel):
    """The shop edited a profile (会员信息登记)."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    changed: list[str]
    birthday: date | None = None
    profile_complete: bool
