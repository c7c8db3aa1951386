"""Loyalty events (`laoke.loyalty.v1`): points, tiers and coupons of members."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

POINTS_CHANGED = "loyalty.points_changed"
TIER_CHANGED = "loyalty.tier_changed"
TIERS_RENAMED = "loyalty.tiers_renamed"
POINTS_EXPIRING = "loyalty.points_expiring"
POINTS_EXPIRED = "loyalty.points_expired"
COUPON_ISSUED = "coupon.issued"
COUPON_REDEEMED = "coupon.redeemed"


class PointsChangedPayload(BaseModel):
    """One ledger entry and the balances after it."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    delta: int  # change of the available balance
    pending_delta: int = 0
    kind: str  # earn, pending, release, redeem, expire, reverse, adjust, signin, bonus
    reference: str
    balance: int  # available points after the change
    pending: int = 0


class TierChangedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: str
    from_level: int | None = None
    to_level: int
    tier_name: str


class RenamedTier(BaseModel):
    model_config = ConfigDict(extra="ignore")

    level: int
    name: str
    previous_name: str


class TiersRenamedPayload(BaseModel):
    """The programme gave existing tiers new names (金卡 → 黄金会员). Nobody moved, so no `tier_changed`
    event says so; consumers that keep a member's tier name rename it for every member of the level,
    set-based, once per shop."""

    model_config = ConfigDict(extra="ignore")

    tiers: list[RenamedTier]


class PointsExpiringPayload(BaseModel):
    """Sent `notice_days` before points expire (messaging reminds the member to spend them)."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    points: int
    expires_at: datetime
    balance: int


class CouponIssuedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: str
    code: str
    template_id: str
    expires_at: datetime | None = None


class CouponRedeemedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: str
    code: str
    template_id: str
    order_id: str
    order_paid_fen: int


class PointsExpiredPayload(BaseModel):
    """One expiry run of one shop, however many members it touched (a nightly run can expire points of
    a million members; one event per member would flood every consumer). Consumers that keep balances
    read the touched members' new balances in one stream from `balances_path` on loyalty (CSV with
    the columns `customer_id,balance`), as they do for history imports."""

    model_config = ConfigDict(extra="ignore")

    run: str
    members: int
    points: int
    balances_path: str


ACTIVITY_PARTICIPATED = "activity.participated"
ACTIVITY_REWARDED = "activity.rewarded"
CUSTOMER_ATTRIBUTES_UPDATED = "customer.attributes_updated"


# The kinds of engagement activity (docs/activities.md), as `activity_type` in the events below.
ActivityType = Literal[
    "favorite_shop",
    "favorite_item",
    "add_to_cart",
    "profile_completion",
    "birthday_registration",
    "survey",
    "vote",
    "grab",
    "guess_price",
    "task_chain",
    "referral",
]


class ActivityParticipatedPayload(BaseModel):
    """A member took part in an engagement activity (answered, voted, grabbed, guessed, was invited,
    finished a task)."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    activity_id: str
    activity_type: str
    participation_id: str
    status: str


class ActivityRewardedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: str
    activity_id: str
    activity_type: str
    participation_id: str
    points: int = 0
    coupon_code: str | None = None


class AttributesUpdatedPayload(BaseModel):
    """Custom customer attributes a member told the shop (a survey answer): segmentation stores them on
    the profile, where segment rules read them (`attributes.skin_type`). A multiple-choice answer is a
    list of strings; the newest answer of a key replaces the older one."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    attributes: dict[str, str | list[str]]
    source: str
