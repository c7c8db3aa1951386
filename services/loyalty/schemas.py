"""Request and response models of the loyalty API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from laoke.kit.money import Yuan
from laoke.kit.patches import refuse_nulls


class NextTier(BaseModel):
    level: int
    name: str
    spend_needed: Yuan = Field(description="More spend on completed orders to reach it")
    orders_needed: int


class Expiring(BaseModel):
    points: int
    expires_at: datetime = Field(description="When the first of these points expire")


class LiabilityOut(BaseModel):
    """What the shop owes its members in points."""

    members: int
    points_outstanding: int = Field(description="Available points of every member")
    points_pending: int = Field(description="Points waiting for their orders to complete")
    expiring: dict[str, int] = Field(
        description="Points that expire within 30, 60 and 90 days",
        examples=[{"30": 1200, "60": 3400, "90": 5000}],
    )


class MemberOut(BaseModel):
    customer_id: str = Field(examples=["cus_3f9a0c1e5b7d2a48"])
    tier_level: int = Field(description="0 before the first tier", examples=[2])
    tier: str | None = Field(examples=["银卡"])
    discount: int = Field(description="Share of the price paid, in percent (95 = 9.5折)", examples=[98])
    points_available: int = Field(examples=[128])
    points_pending: int = Field(description="Promised on paid orders, credited on completion", examples=[0])
    lifetime_earned: int = Field(examples=[1024])
    expiring_soon: Expiring | None = Field(description="Points expiring within the programme's notice days")
    signin_streak: int
    signed_in_today: bool
    qualifying_spend: Yuan
    qualifying_orders: int
    next_tier: NextTier | None
    member_since: datetime
    updated_at: datetime


class EntryOut(BaseModel):
    id: int
    kind: str = Field(examples=["earn"])
    points: int = Field(description="Change of the available balance")
    pending: int = Field(description="Change of the pending balance")
    reference: str = Field(examples=["order:ord_5d1f0c2b9a7e4c31"])
    note: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"points": 200, "reason": "客服补偿: 物流延误"}]}
    )

    points: int = Field(description="Positive adds, negative takes (never below zero); not 0")
    reason: str = Field(min_length=1, max_length=400)

    @model_validator(mode="after")
    def _not_zero(self) -> AdjustmentIn:
        if self.points == 0:
            raise ValueError("points must not be 0")
        if abs(self.points) > 10_000_000:
            raise ValueError("points must be within ±10,000,000")
        return self


class AdjustmentOut(BaseModel):
    entry_id: int
    points: int
    points_available: int


class SigninOut(BaseModel):
    signed_in: bool = Field(description="False when the member had already signed in today")
    day: date = Field(description="The shop-local day")
    points: int = Field(description="Points awarded by this call (0 on a second call the same day)")
    bonus: int = Field(description="Streak bonus awarded by this call")
    streak: int
    points_available: int


RewardKind = Literal["coupon", "gift", "points_cash"]


class RewardIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "定制茶杯", "kind": "gift", "points_cost": 500, "stock": 100, "per_member_limit": 1},
                {"name": "10元无门槛券", "kind": "coupon", "points_cost": 300, "coupon_template_id": "cpt_…"},
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    kind: RewardKind
    points_cost: int = Field(gt=0, le=100_000_000)
    cash: Yuan = Field(default=Decimal(0), description="Cash to pay on top (points + cash rewards)")
    stock: int | None = Field(default=None, ge=0, description="null: unlimited")
    min_tier_level: int = Field(default=0, ge=0, le=20)
    per_member_limit: int | None = Field(default=None, ge=1)
    coupon_template_id: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _consistent(self) -> RewardIn:
        if self.kind == "coupon" and not self.coupon_template_id:
            raise ValueError("a coupon reward needs coupon_template_id")
        if self.kind == "points_cash" and self.cash <= 0:
            raise ValueError("a points + cash reward needs a cash amount")
        return self


class RewardPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"stock": 50, "active": True}]})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    points_cost: int | None = Field(default=None, gt=0, le=100_000_000)
    stock: int | None = Field(default=None, ge=0)
    min_tier_level: int | None = Field(default=None, ge=0, le=20)
    per_member_limit: int | None = Field(default=None, ge=1)
    active: bool | None = None

    @model_validator(mode="after")
    def _keeps_required(self) -> RewardPatch:
        refuse_nulls(self, "name", "points_cost", "min_tier_level", "active")
        return self


class RewardOut(BaseModel):
    id: str = Field(examples=["rwd_0c1e5b7d2a483f9a"])
    name: str
    description: str | None
    kind: RewardKind
    points_cost: int
    cash: Yuan
    stock: int | None
    redeemed_count: int
    min_tier_level: int
    per_member_limit: int | None
    coupon_template_id: str | None
    active: bool


class RewardList(BaseModel):
    items: list[RewardOut]


class RedemptionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reward_id": "rwd_0c1e5b7d2a483f9a"}]}
    )

    reward_id: str = Field(min_length=1, max_length=32)


RedemptionStatus = Literal["pending", "fulfilled", "cancelled"]


class RedemptionOut(BaseModel):
    id: str
    reward_id: str
    points: int
    cash: Yuan
    coupon_code: str | None
    status: RedemptionStatus = Field(
        description="`fulfilled` at once for a coupon; a gift is `pending` until the shop sends it"
    )
    points_available: int
    created_at: datetime


class RedemptionRecord(BaseModel):
    id: str = Field(examples=["rdm_6a1f0c2b9a7e4c31"])
    customer_id: str = Field(examples=["cus_3f9a0c1e5b7d2a48"])
    reward_id: str
    reward_name: str = Field(examples=["紫砂茶杯"])
    kind: RewardKind
    points: int
    cash: Yuan = Field(description="To collect from the member, for a points + cash reward")
    coupon_code: str | None
    status: RedemptionStatus
    note: str | None = Field(
        description="What the shop wrote when it settled it: a tracking number, a reason"
    )
    created_at: datetime
    updated_at: datetime | None


class RedemptionList(BaseModel):
    items: list[RedemptionRecord]
    next_cursor: str | None = None


class RedemptionPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "fulfilled", "note": "顺丰 SF1234567890"},
                {"status": "cancelled", "note": "缺货，积分已退回"},
            ]
        },
    )

    status: Literal["fulfilled", "cancelled"]
    note: str | None = Field(default=None, max_length=200)


CouponKind = Literal["no_threshold", "spend_save", "percent_off"]
CouponFlagReason = Literal["reused", "expired", "not_yet_valid", "below_threshold", "other_buyer"]


class CouponTemplateIn(BaseModel):
    """无门槛 `no_threshold` (amount off), 满减 `spend_save` (spend threshold, save amount), `percent_off`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "满200减20",
                    "kind": "spend_save",
                    "threshold": "200",
                    "amount": "20",
                    "valid_days": 30,
                },
                {"name": "10元无门槛", "kind": "no_threshold", "amount": "10", "total_limit": 1000},
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    kind: CouponKind
    amount: Yuan | None = None
    threshold: Yuan | None = None
    percent_off: int | None = Field(default=None, ge=1, le=99)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    valid_days: int | None = Field(default=None, ge=1, le=3650, description="Validity from issue")
    total_limit: int | None = Field(default=None, ge=1)
    per_customer_limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> CouponTemplateIn:
        if self.kind in ("no_threshold", "spend_save") and not self.amount:
            raise ValueError(f"a {self.kind} coupon needs an amount")
        if self.kind == "spend_save" and (
            self.threshold is None or self.amount is None or self.threshold <= self.amount
        ):
            raise ValueError("a spend_save coupon needs a threshold above its amount")
        if self.kind == "percent_off" and self.percent_off is None:
            raise ValueError("a percent_off coupon needs percent_off")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


COUPON_TERMS = ("kind", "amount", "threshold", "percent_off", "valid_from", "valid_days")


class CouponTemplatePatch(BaseModel):
    """What can change once coupons of a template exist: its name, how many more may be issued, and
    until when new ones are valid. Coupons already issued keep their terms, so the terms themselves
    (kind, amount, threshold, percent off, valid from, valid days) change only while none is issued."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"total_limit": 500},
                {"total_limit": 0, "name": "已停发"},
                {"name": "满300减30", "threshold": "300", "amount": "30"},
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: CouponKind | None = None
    amount: Yuan | None = None
    threshold: Yuan | None = None
    percent_off: int | None = Field(default=None, ge=1, le=99)
    valid_from: AwareDatetime | None = None
    valid_days: int | None = Field(default=None, ge=1, le=3650, description="Validity from issue")
    total_limit: int | None = Field(
        default=None, ge=0, description="At most this many in all (not below those issued; null: no limit)"
    )
    per_customer_limit: int | None = Field(default=None, ge=1, description="null: no limit")
    valid_until: AwareDatetime | None = Field(default=None, description="For coupons issued from now on")

    @model_validator(mode="after")
    def _keeps_required(self) -> CouponTemplatePatch:
        refuse_nulls(self, "name", "kind")
        return self


class CouponTemplateOut(BaseModel):
    id: str = Field(examples=["cpt_5d1f0c2b9a7e4c31"])
    name: str
    kind: CouponKind
    amount: Yuan | None
    threshold: Yuan | None
    percent_off: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    total_limit: int | None
    per_customer_limit: int | None
    issued: int
    redeemed: int
    revenue: Yuan = Field(description="Paid on the orders that used these coupons")
    reuses_flagged: int = Field(description="Orders that named an already redeemed code")
    flagged: dict[CouponFlagReason, int] = Field(
        description="Uses against the template's rules, by reason (`reused` included); the orders are at "
        "`GET /api/v1/coupons/templates/{id}/flags`",
        examples=[{"reused": 1, "below_threshold": 2}],
    )


class CouponTemplateList(BaseModel):
    items: list[CouponTemplateOut]


class CouponFlagOut(BaseModel):
    code: str = Field(examples=["K7P3QX9M2A"])
    order_id: str = Field(examples=["ord_6a1f0c2b9a7e4c31"])
    reason: CouponFlagReason = Field(
        description="`reused`: the code was already spent on another order (this order is not counted); "
        "`expired` / `not_yet_valid`: the order was placed outside the coupon's validity; "
        "`below_threshold`: the order's total, with the saving added back, is under a 满减 threshold; "
        "`other_buyer`: the order's buyer is not the member the coupon was issued to"
    )
    holder_id: str = Field(description="The member the coupon was issued to")
    buyer_id: str = Field(description="The customer of the order")
    flagged_at: datetime


class CouponFlagList(BaseModel):
    items: list[CouponFlagOut]
    next_cursor: str | None = None


class IssueIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customer_ids": ["cus_3f9a0c1e5b7d2a48"]}, {"segment_id": "seg_…"}]},
    )

    customer_ids: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None, min_length=1, max_length=10_000
    )
    segment_id: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one_source(self) -> IssueIn:
        if (self.customer_ids is None) == (self.segment_id is None):
            raise ValueError("give either customer_ids or segment_id")
        return self


class IssueOut(BaseModel):
    issued: int
    skipped_at_limit: list[str] = Field(description="Customers who already hold the per-customer limit")
    codes: dict[str, str] = Field(description="customer id → code (for up to 1,000 customers)")


class CouponOut(BaseModel):
    code: str = Field(examples=["K7P3QX9M2A"])
    template_id: str
    name: str
    status: Literal["issued", "redeemed", "expired"]
    issued_at: datetime
    expires_at: datetime | None
    redeemed_order_id: str | None
    redeemed_at: datetime | None


class CouponList(BaseModel):
    items: list[CouponOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


class PrizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    probability: Decimal = Field(gt=0, le=1, max_digits=7, decimal_places=6)
    stock: int | None = Field(default=None, ge=0)
    points: int | None = Field(default=None, ge=1)
    coupon_template_id: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one_reward(self) -> PrizeIn:
        if (self.points is None) == (self.coupon_template_id is None):
            raise ValueError("a prize is either points or a coupon_template_id")
        return self


class LotteryIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "双11 幸运大转盘",
                    "cost_points": 20,
                    "free_draws_per_day": 1,
                    "points_budget": 100000,
                    "prizes": [
                        {"name": "100积分", "probability": "0.1", "points": 100},
                        {
                            "name": "满200减20券",
                            "probability": "0.05",
                            "stock": 500,
                            "coupon_template_id": "cpt_…",
                        },
                    ],
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    cost_points: int = Field(ge=0, le=1_000_000)
    free_draws_per_day: int = Field(default=0, ge=0, le=100)
    points_budget: int | None = Field(default=None, ge=0, description="Most points prizes may pay in total")
    prizes: list[PrizeIn] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _odds(self) -> LotteryIn:
        if sum(p.probability for p in self.prizes) > 1:
            raise ValueError("prize probabilities add up to more than 1")
        return self


class PrizeRestock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(max_length=32, examples=["prz_3f9a0c1e5b7d2a48"])
    stock: int | None = Field(ge=0, description="What is left to win from now on; null: no limit")


class LotteryPatch(BaseModel):
    """What may change once members draw: each draw is paid and judged by the lottery as it is then.
    The prizes and their odds stay as created (a new lottery for new odds)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"active": False},
                {"points_budget": 200000, "prizes": [{"id": "prz_3f9a0c1e5b7d2a48", "stock": 100}]},
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    cost_points: int | None = Field(default=None, ge=0, le=1_000_000)
    free_draws_per_day: int | None = Field(default=None, ge=0, le=100)
    points_budget: int | None = Field(default=None, ge=0, description="null: no cap")
    active: bool | None = Field(
        default=None, description="false stops it: draws answer 409 `lottery_stopped`"
    )
    prizes: list[PrizeRestock] | None = Field(default=None, max_length=20, description="Prizes restocked")

    @model_validator(mode="after")
    def _keeps_required(self) -> LotteryPatch:
        refuse_nulls(self, "name", "cost_points", "free_draws_per_day", "active", "prizes")
        return self


class PrizeOut(BaseModel):
    id: str
    name: str
    probability: Decimal
    stock: int | None
    awarded: int
    points: int | None
    coupon_template_id: str | None


class LotteryOut(BaseModel):
    id: str = Field(examples=["lot_5d1f0c2b9a7e4c31"])
    name: str
    cost_points: int
    free_draws_per_day: int
    points_budget: int | None
    points_awarded: int
    active: bool
    prizes: list[PrizeOut]
    draws: int


class LotteryList(BaseModel):
    items: list[LotteryOut]


class DrawIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"customer_id": "cus_3f9a0c1e5b7d2a48"}]}
    )

    customer_id: str = Field(min_length=1, max_length=32)


class DrawOut(BaseModel):
    id: str
    free: bool
    cost_points: int
    won: bool
    prize: PrizeOut | None
    points_awarded: int
    coupon_code: str | None
    points_available: int
