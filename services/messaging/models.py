"""Tables of the messaging schema.

The one guarantee everything here leans on: `messages` has a unique key on (shop, source, customer,
channel), where `source` names the campaign or the automation occurrence (`campaign:cmp_…`,
`unpaid_reminder:ord_…`). Whatever replica, retry or restart tries to send a second time inserts
nothing, so each buyer gets at most one message per occurrence and channel.
"""

from __future__ import annotations

from datetime import date, datetime
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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from laoke.kit.db import declarative_base_for
from laoke.kit.merges import merged_customers_table
from laoke.kit.outbox import plumbing_tables
from laoke.kit.tier_names import tier_names_table

SCHEMA = "messaging"
Base = declarative_base_for(SCHEMA)
plumbing = plumbing_tables(Base.metadata)
merged_customers = merged_customers_table(Base.metadata)
tier_names = tier_names_table(Base.metadata)


class Shop(Base):
    """The shops messaging sends for, from `shop.created`: the name greets, the zone times quiet hours."""

    __tablename__ = "shops"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))


class ChannelConfig(Base):
    """How a shop sends on one channel (`sms`, `email`, `inapp`): enabled, sender and provider details."""

    __tablename__ = "channel_configs"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Policy(Base):
    """A shop's protection rules (services/messaging/policy.py). No row: the defaults."""

    __tablename__ = "policies"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Template(Base):
    __tablename__ = "templates"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(String(300))  # e-mail only
    body: Mapped[str] = mapped_column(Text)
    # The code the SMS vendor approved this text under (Aliyun TemplateCode); defaults to the id.
    provider_template_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Consent(Base):
    """A buyer's choice per channel. No row: subscribed (the shop has the buyer's order)."""

    __tablename__ = "consents"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    subscribed: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))  # api, sms_reply, unsubscribe
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Contact(Base):
    """What messaging knows of a buyer to address and greet them, kept from events: the buyer
    snapshot of orders, tier and points from loyalty, birthday from profile edits."""

    __tablename__ = "contacts"
    # Who a replying number (退订/TD) belongs to. Only contacts with a mobile: holding every contact, an
    # index led by the shop is as good as the key to the planner while the statistics do not know the
    # shop (estimated at a row), and a lookup by customer could walk the whole shop on it. No index on
    # the e-mail: nothing looks a contact up by it (an unsubscribe link names the customer).
    __table_args__ = (
        Index("ix_contacts_mobile", "shop_id", "mobile", postgresql_where=text("mobile IS NOT NULL")),
    )

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(100))
    mobile: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    tier: Mapped[str | None] = mapped_column(String(64))
    points: Mapped[int | None] = mapped_column(BigInteger)
    birthday: Mapped[date | None] = mapped_column(Date)
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Order(Base):
    """The orders messaging reacts to and attributes: status for 催付 and shipment, paid amount for
    campaign revenue."""

    __tablename__ = "orders"
    # Neither index can serve a lookup of orders by id (催付 checks them by id at send time), for the
    # reason given at `Contact`: the buyer's orders are led by the customer, and a campaign's
    # conversions (orders paid in its window) hold only paid orders.
    __table_args__ = (
        Index("ix_orders_customer_paid", "customer_id", "shop_id", "paid_at"),
        Index("ix_orders_paid", "shop_id", "paid_at", postgresql_where=text("paid_at IS NOT NULL")),
    )

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    external_order_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(20))
    total_fen: Mapped[int] = mapped_column(BigInteger)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Automation(Base):
    """A shop's setting for one automation kind (services/messaging/automations.py). No row: off."""

    __tablename__ = "automations"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    channel: Mapped[str] = mapped_column(String(8))
    template_id: Mapped[str] = mapped_column(String(32))
    delay_minutes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    coupon_template_id: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("holdout_percent BETWEEN 0 AND 90", name="holdout_percent_range"),
        Index("ix_campaigns_shop_created", "shop_id", "created_at"),
        Index("ix_campaigns_shop_segment", "shop_id", "segment_id"),
    )

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    segment_id: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    template_id: Mapped[str | None] = mapped_column(String(32))
    variants_by_tier: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    coupon_template_id: Mapped[str | None] = mapped_column(String(32))
    schedule_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    holdout_percent: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    attribution_days: Mapped[int] = mapped_column(SmallInteger, server_default=text("7"))
    # draft → scheduled → sending ⇄ paused → completed; or cancelled from any but completed; or failed
    # when its audience could not be taken (its segment deleted meanwhile), with the reason
    status: Mapped[str] = mapped_column(String(16), server_default=text("'draft'"))
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    targeted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    holdout: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    launched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    snapshot_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CampaignRecipient(Base):
    """The audience snapshot taken at launch: who was targeted and who was held out."""

    __tablename__ = "campaign_recipients"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    holdout: Mapped[bool] = mapped_column(Boolean)


class Message(Base):
    """One message to one buyer on one channel, from queueing to delivery. In-app messages are the
    buyer's inbox."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("shop_id", "source", "customer_id", "channel", name="uq_messages_once"),
        # The dispatcher's queue (oldest due first), and sends in flight by their lease.
        Index(
            "ix_messages_due", "not_before", "id", postgresql_where=text("status IN ('queued', 'sending')")
        ),
        Index("ix_messages_customer", "shop_id", "customer_id", "channel", "created_at"),
        # Only the rows that have one enter these (automations have no campaign; in-app no vendor id),
        # which keeps a million-message campaign insert to the indexes it needs.
        Index(
            "ix_messages_campaign",
            "shop_id",
            "campaign_id",
            "status",
            postgresql_where=text("campaign_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_deferred",
            "shop_id",
            "campaign_id",
            postgresql_where=text("deferred AND campaign_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_provider",
            "provider_message_id",
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(80))  # campaign:cmp_…, unpaid_reminder:ord_…
    customer_id: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    marketing: Mapped[bool] = mapped_column(Boolean)  # capped and kept out of quiet hours
    campaign_id: Mapped[str | None] = mapped_column(String(32))
    automation: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(32))
    template_id: Mapped[str] = mapped_column(String(32))
    # queued → (sending, for SMS and e-mail) → sent → delivered | failed; or suppressed / cancelled
    status: Mapped[str] = mapped_column(String(12), server_default=text("'queued'"))
    reason: Mapped[str | None] = mapped_column(String(300))
    deferred: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    recipient: Mapped[str | None] = mapped_column(String(254))  # the mobile or e-mail sent to
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    coupon_template_id: Mapped[str | None] = mapped_column(String(32))  # issue one with this message
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EarlySmsReport(Base):
    """A delivery report that reached us before the vendor's answer to the send did (the message is
    still `sending`, under our own OutId): kept until that answer names the vendor's id, then applied."""

    __tablename__ = "early_sms_reports"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider_message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254), primary_key=True)
    success: Mapped[bool] = mapped_column(Boolean)
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Feedback(Base):
    """A complaint, suggestion or return problem (客户反馈), tracked to resolution."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_shop_status", "shop_id", "status", "created_at"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # complaint, suggestion, return, problem_shipment
    subject: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12), server_default=text("'open'"))
    assignee: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Subscription(Base):
    """A third-party app's outbound webhook: which events of the shop to POST to which URL."""

    __tablename__ = "subscriptions"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    secret: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One event for one subscription, from pending to delivered or failed: the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_once"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_subscription", "shop_id", "subscription_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    subscription_id: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON posted (and signed)
    status: Mapped[str] = mapped_column(String(12), server_default=text("'pending'"))  # delivered, failed
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_status_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
