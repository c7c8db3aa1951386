"""Tables of the loyalty schema.

Invariants (checked by the property test, tests/integration/loyalty/test_ledger_properties.py):
- `members.points_balance` = sum of the member's `points_ledger.points` = sum of its lots' `remaining`;
- `members.points_pending` = sum of the member's `points_ledger.pending`;
- both are never negative. Every change of points is a ledger entry; entries are never updated.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from laoke.kit.db import declarative_base_for
from laoke.kit.idempotency import idempotency_keys_table
from laoke.kit.merges import merged_customers_table
from laoke.kit.outbox import plumbing_tables

SCHEMA = "loyalty"
Base = declarative_base_for(SCHEMA)
plumbing = plumbing_tables(Base.metadata)
merged_customers = merged_customers_table(Base.metadata)
idempotency_keys = idempotency_keys_table(Base.metadata)

_ZERO = text("0")


class Program(Base):
    """A shop's loyalty programme (services/loyalty/program.py validates it). No row: the defaults."""

    __tablename__ = "programs"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Existing members are being placed in the programme's tiers (services/loyalty/tiers.py): null when
    # done, else the last member placed ('' before the first), so the placement resumes after a crash.
    placed_after: Mapped[str | None] = mapped_column(String(32))


class Member(Base):
    """A customer's standing in the shop's programme. Balances are cached sums of the ledger, updated
    in the same transaction as every entry, under this row's lock."""

    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint("points_balance >= 0", name="points_balance_not_negative"),
        CheckConstraint("points_pending >= 0", name="points_pending_not_negative"),
    )

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    points_balance: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    points_pending: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    tier_level: Mapped[int] = mapped_column(SmallInteger, server_default=_ZERO)  # 0: no tier yet
    tier_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    signin_streak: Mapped[int] = mapped_column(Integer, server_default=_ZERO)
    last_signin_on: Mapped[date | None] = mapped_column(Date)
    birthday: Mapped[date | None] = mapped_column(Date)  # from segmentation's profile edits
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PointsEntry(Base):
    """One change of a member's points; append-only. `points` moves the available balance, `pending`
    the pending one. A reference is booked once per kind, so a redelivered cause changes nothing."""

    __tablename__ = "points_ledger"
    __table_args__ = (
        UniqueConstraint("shop_id", "kind", "reference"),
        Index("ix_points_ledger_member", "shop_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    reference: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PointsLot(Base):
    """Points credited together (one earn, sign-in, bonus...) and what is left of them. Spending and
    expiry take from the lots that expire first; expiry only ever takes what is left."""

    __tablename__ = "points_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_within_lot"),
        Index("ix_points_lots_member", "shop_id", "customer_id", "expires_at", "id"),
        Index("ix_points_lots_expiring", "expires_at", postgresql_where=text("remaining > 0")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(32))
    entry_id: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoyaltyOrder(Base):
    """This service's view of each order: its newest state and the points it holds now."""

    __tablename__ = "orders"
    # A member's orders. Led by the customer, not the shop: a shop the statistics do not know yet (a
    # new shop, until autovacuum analyses the table) is estimated at a row or two, and an index led by
    # the shop then looked as good as the key for finding a run's orders by id, so each run walked every
    # order of the shop.
    __table_args__ = (Index("ix_loyalty_orders_customer", "customer_id", "shop_id"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger)
    completed: Mapped[bool] = mapped_column(Boolean)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    points_available: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    points_pending: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)


class Reward(Base):
    """Something members buy with points (积分兑换): a coupon, a gift, or a gift for points plus cash."""

    __tablename__ = "rewards"
    __table_args__ = (
        Index("ix_rewards_shop", "shop_id", "created_at"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(16))  # coupon, gift, points_cash
    points_cost: Mapped[int] = mapped_column(BigInteger)
    cash_fen: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    stock: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    min_tier_level: Mapped[int] = mapped_column(SmallInteger, server_default=_ZERO)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    coupon_template_id: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Redemption(Base):
    """Points spent on a reward. A coupon is handed over at once (`fulfilled`); a gift waits for the
    shop to send it (`pending` → `fulfilled`) or to call it off (`cancelled`: points and stock return)."""

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("ix_redemptions_member", "shop_id", "customer_id", "reward_id"),
        Index("ix_redemptions_reward", "shop_id", "reward_id"),
        # The shop's list, newest first.
        Index("ix_redemptions_shop", "shop_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(32))
    reward_id: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger)
    cash_fen: Mapped[int] = mapped_column(BigInteger)
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    note: Mapped[str | None] = mapped_column(String(200))  # a tracking number, why it was cancelled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CouponTemplate(Base):
    """A kind of coupon (优惠券): 无门槛 amount off, 满减 spend X save Y, or percent off."""

    __tablename__ = "coupon_templates"
    __table_args__ = (Index("ix_coupon_templates_shop", "shop_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # no_threshold, spend_save, percent_off
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    threshold_fen: Mapped[int | None] = mapped_column(BigInteger)
    percent_off: Mapped[int | None] = mapped_column(SmallInteger)
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_days: Mapped[int | None] = mapped_column(Integer)  # from issue, when no fixed end
    total_limit: Mapped[int | None] = mapped_column(Integer)
    per_customer_limit: Mapped[int | None] = mapped_column(Integer)
    issued_count: Mapped[int] = mapped_column(Integer, server_default=_ZERO)
    redeemed_count: Mapped[int] = mapped_column(Integer, server_default=_ZERO)
    revenue_fen: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Coupon(Base):
    """One issued coupon; its code is unique within the shop."""

    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_member", "shop_id", "customer_id", "issued_at"),
        Index("ix_coupons_template", "shop_id", "template_id"),
        # A coupon sent with a message names the message's source: asked again, the same one is returned.
        Index(
            "uq_coupons_reference",
            "shop_id",
            "template_id",
            "customer_id",
            "reference",
            unique=True,
            postgresql_where=text("reference IS NOT NULL"),
        ),
    )

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # issue, redemption, lottery, message
    reference: Mapped[str | None] = mapped_column(String(80))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    redeemed_order_id: Mapped[str | None] = mapped_column(String(32))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CouponFlag(Base):
    """An order that used one of our codes against its rules: the code already spent on another order
    (`reused`, never counted again), or a first use that the shop's checkout should have refused
    (`expired`, `not_yet_valid`, `below_threshold`, `other_buyer`; counted, the code was spent)."""

    __tablename__ = "coupon_flags"
    __table_args__ = (
        UniqueConstraint("shop_id", "code", "order_id", "reason"),
        Index("ix_coupon_flags_template", "shop_id", "template_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(16))
    holder_id: Mapped[str] = mapped_column(String(32))  # the member the coupon was issued to
    buyer_id: Mapped[str] = mapped_column(String(32))  # the customer of the order
    flagged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Lottery(Base):
    """抽奖: members draw for prizes, paying points or using their free draws of the day."""

    __tablename__ = "lotteries"
    __table_args__ = (Index("ix_lotteries_shop", "shop_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    cost_points: Mapped[int] = mapped_column(BigInteger)
    free_draws_per_day: Mapped[int] = mapped_column(Integer, server_default=_ZERO)
    points_budget: Mapped[int | None] = mapped_column(BigInteger)  # None: no cap on points prizes
    points_awarded: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LotteryPrize(Base):
    __tablename__ = "lottery_prizes"
    __table_args__ = (
        Index("ix_lottery_prizes_lottery", "shop_id", "lottery_id"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="prize_stock_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    lottery_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    probability: Mapped[Decimal] = mapped_column(Numeric(7, 6))
    stock: Mapped[int | None] = mapped_column(Integer)
    awarded_count: Mapped[int] = mapped_column(Integer, server_default=_ZERO)
    points: Mapped[int | None] = mapped_column(BigInteger)
    coupon_template_id: Mapped[str | None] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(SmallInteger)


class LotteryDraw(Base):
    """Every draw, won or not."""

    __tablename__ = "lottery_draws"
    __table_args__ = (Index("ix_lottery_draws_member_day", "shop_id", "lottery_id", "customer_id", "day"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    lottery_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    day: Mapped[date] = mapped_column(Date)
    free: Mapped[bool] = mapped_column(Boolean)
    cost_points: Mapped[int] = mapped_column(BigInteger)
    prize_id: Mapped[str | None] = mapped_column(String(32))
    points_awarded: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    drawn_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Activity(Base):
    """An engagement activity (日常互动): a task, survey, vote, grab, price guess, task chain or referral.
    `rules` holds the validated type-specific settings (services/loyalty/activity_schemas.py); the
    counters beside them are taken with conditional UPDATEs, so a budget or stock is never overspent."""

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_shop_status", "shop_id", "status", "type"),
        CheckConstraint("stock IS NULL OR rewards_given <= stock", name="activity_stock_kept"),
        CheckConstraint(
            "budget_points IS NULL OR points_awarded <= budget_points", name="activity_budget_kept"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # draft, live, ended
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rules: Mapped[dict[str, Any]] = mapped_column(JSONB)
    reward_points: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    budget_points: Mapped[int | None] = mapped_column(BigInteger)  # None: no cap
    stock: Mapped[int | None] = mapped_column(Integer)  # rewards in all; None: no cap
    rewards_given: Mapped[int] = mapped_column(Integer, server_default=_ZERO)
    points_awarded: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    revealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # guess_price
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Participation(Base):
    """One member taking part once. `dedupe_key` is unique per activity and says what may happen only
    once: a task per member, a vote per member, a grab per member and slot, an invitation per invitee."""

    __tablename__ = "participations"
    __table_args__ = (
        UniqueConstraint("shop_id", "activity_id", "dedupe_key"),
        Index("ix_participations_member", "shop_id", "activity_id", "customer_id", "day"),
        Index("ix_participations_customer", "shop_id", "customer_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    activity_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(120))
    day: Mapped[date] = mapped_column(Date)  # shop-local, for daily limits
    slot: Mapped[str | None] = mapped_column(String(40))  # grab: "<day>#<slot index>"
    # done, rewarded, won, lost, guessed, in_progress, pending (referral), unrewarded (budget), blocked
    status: Mapped[str] = mapped_column(String(16))
    answer: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    inviter_id: Mapped[str | None] = mapped_column(String(32))
    points_cost: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    points_awarded: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ActivitySlot(Base):
    """How much of a grab's pool one time slot has given away (the row every grab of the slot takes)."""

    __tablename__ = "activity_slots"
    __table_args__ = (CheckConstraint("taken >= 0", name="slot_taken_not_negative"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    activity_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slot: Mapped[str] = mapped_column(String(40), primary_key=True)
    taken: Mapped[int] = mapped_column(Integer, server_default=_ZERO)


class Invitation(Base):
    """A member's invite code for a referral activity (客户邀请)."""

    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("shop_id", "code"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    activity_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(String(16))
    mobile_hash: Mapped[str | None] = mapped_column(String(64))  # the inviter's, for the same-phone check
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
