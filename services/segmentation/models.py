"""Tables of the segmentation schema."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from laoke.kit.db import declarative_base_for
from laoke.kit.merges import merged_customers_table
from laoke.kit.outbox import plumbing_tables
from laoke.kit.tier_names import tier_names_table

SCHEMA = "segmentation"
Base = declarative_base_for(SCHEMA)
plumbing = plumbing_tables(Base.metadata)
merged_customers = merged_customers_table(Base.metadata)
tier_names = tier_names_table(Base.metadata)


class ProfileOrder(Base):
    """This service's projection of each order (from order events): the facts profiles are computed from."""

    __tablename__ = "profile_orders"
    __table_args__ = (Index("ix_profile_orders_customer", "shop_id", "customer_id"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Profile(Base):
    """One buyer of one shop, with purchase aggregates recomputed from `profile_orders`."""

    __tablename__ = "profiles"
    # No index on the scores or lifecycle, and pages left 20% free (fillfactor 80, migration 0007): a
    # rescore then rewrites rows in place without touching any index (HOT updates), which halved it.
    # Half-free pages (fillfactor 50) made a whole-shop rescore twice as fast again but order events
    # ~20% slower (pages at the pruning threshold on every visit), and were not kept.
    __table_args__ = (
        # `q` search: prefix of the mobile, substring of name and nick (trigram indexes). Only profiles
        # with a mobile: a lookup by customer then cannot use it. Holding every profile, it was the
        # planner's pick for the rescore of a run of events (a plan made while the table was nearly
        # empty and kept: the shop's every profile walked for each customer, ~100 ms a run).
        Index("ix_profiles_shop_mobile", "shop_id", "mobile", postgresql_where=text("mobile IS NOT NULL")),
        Index(
            "ix_profiles_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}
        ),
        Index(
            "ix_profiles_nick_trgm", "nick", postgresql_using="gin", postgresql_ops={"nick": "gin_trgm_ops"}
        ),
    )

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Who the buyer is: from orders and behaviour (the latest wins) and from the shop's edits
    # (会员信息登记). A field named in `edited_fields` was set by the shop; order data leaves it alone.
    nick: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(100))
    gender: Mapped[str | None] = mapped_column(String(8))  # male, female
    birthday: Mapped[date | None] = mapped_column(Date)
    mobile: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    province: Mapped[str | None] = mapped_column(String(50))
    city: Mapped[str | None] = mapped_column(String(50))
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default=text("'{}'"))
    external_ids: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    edited_fields: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default=text("'{}'"))
    # Purchases (recomputed from `profile_orders`).
    orders_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_spent_fen: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    refunded_fen: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    refunds_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Behaviour (details in `profile_behaviour`).
    favorites_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    carts_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # From loyalty and messaging events.
    tier_level: Mapped[int | None] = mapped_column(SmallInteger)
    tier: Mapped[str | None] = mapped_column(String(64))
    points_balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    consent: Mapped[dict[str, bool]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # What the buyer told the shop (survey answers from loyalty's activities): key → text or list of texts.
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # RFM and lifecycle, as of `scored_at` (kept current on every order and by the scheduled refresh).
    r_score: Mapped[int | None] = mapped_column(SmallInteger)
    f_score: Mapped[int | None] = mapped_column(SmallInteger)
    m_score: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    lifecycle: Mapped[str | None] = mapped_column(String(16))
    scored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The look-back window's paid orders and spend behind F and M, kept with the scores so the scheduled
    # refresh rescores from them without reading orders; recounted when `rfm_recount_at` passes (the
    # counted order placed first leaves the window) or anything about the buyer's orders changes.
    rfm_orders: Mapped[int | None] = mapped_column(Integer)
    rfm_spent_fen: Mapped[int | None] = mapped_column(BigInteger)
    rfm_recount_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Predictions of the shop's last CLV fit (services/segmentation/clv.py).
    p_alive: Mapped[float | None] = mapped_column(Float)
    expected_purchases_90d: Mapped[float | None] = mapped_column(Float)
    clv_365d_fen: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ProfileBehaviour(Base):
    """Favourites, add-to-cart and browsing of a buyer, for rules like "carted an item in the last 7 days"."""

    __tablename__ = "profile_behaviour"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)  # "" for the shop itself
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    item_title: Mapped[str | None] = mapped_column(String(500))


class RfmRun(Base):
    """When a shop's profiles were last rescored as a whole: the scheduled refresh counts on the kept
    window aggregates only when it moves forward from here."""

    __tablename__ = "rfm_runs"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RfmRescoreRequest(Base):
    """A whole-shop rescore asked for (a changed configuration of a large shop) and not yet done; done by
    a background task of the replica that took the request, or else by the next scheduled refresh."""

    __tablename__ = "rfm_rescore_requests"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RfmConfig(Base):
    """A shop's RFM thresholds and lifecycle boundaries. A shop without a row uses the default preset."""

    __tablename__ = "rfm_configs"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    preset: Mapped[str] = mapped_column(String(32))
    window_days: Mapped[int] = mapped_column(Integer)
    recency_days: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    frequency: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    monetary_fen: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    active_days: Mapped[int] = mapped_column(Integer)
    sleeping_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomerTag(Base):
    """A free tag (标签) on a customer."""

    __tablename__ = "customer_tags"
    __table_args__ = (Index("ix_customer_tags_tag", "shop_id", "tag"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Segment(Base):
    """A dynamic segment: a saved rule whose members are whoever matches it now."""

    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_shop", "shop_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    rule: Mapped[dict[str, Any]] = mapped_column(JSONB)
    size: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SegmentMember(Base):
    """Who is in a segment, kept current on events and on the schedule so that entering and leaving
    can be announced (`segment.entered` / `segment.exited`)."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_customer", "shop_id", "customer_id"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    segment_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Group(Base):
    """A static group (分组): members are added and removed by hand or copied from a segment."""

    __tablename__ = "groups"
    __table_args__ = (Index("ix_groups_shop", "shop_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (Index("ix_group_members_customer", "shop_id", "customer_id"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ClvModel(Base):
    """A shop's last fitted BG/NBD + Gamma-Gamma model (time unit: days)."""

    __tablename__ = "clv_models"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    customers: Mapped[int] = mapped_column(Integer)
    log_likelihood: Mapped[float] = mapped_column(Float)
    fit_seconds: Mapped[float] = mapped_column(Float)
    fitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ClvFitRequest(Base):
    """A CLV fit of a large shop asked for and not yet done (done by a background task of the replica
    that took the request, or else by the next scheduled refresh), or the last such fit that failed."""

    __tablename__ = "clv_fit_requests"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None: when the fit runs
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
