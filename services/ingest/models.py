"""Tables of the ingest schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from laoke.kit.db import declarative_base_for
from laoke.kit.idempotency import idempotency_keys_table
from laoke.kit.outbox import plumbing_tables

SCHEMA = "ingest"
Base = declarative_base_for(SCHEMA)
plumbing = plumbing_tables(Base.metadata)
idempotency_keys = idempotency_keys_table(Base.metadata)


class Customer(Base):
    """A buyer of one shop; the stable Laoke id every other service keys on."""

    __tablename__ = "customers"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Set when a later order proved this buyer is another customer (same mobile on another channel):
    # the id stays resolvable, every identity and order now points at `merged_into`.
    merged_into: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomerIdentity(Base):
    """How one channel knows a buyer (Taobao open uid or nick, Shopify customer id, e-mail, ...).

    The pseudo-channel `mobile` holds normalised mobile numbers: the one identity shared across channels.
    """

    __tablename__ = "customer_identities"
    # Customer first: led by the shop, it looked as good as the primary key to a lookup by key in a shop
    # the statistics did not know yet (taken for a row or two), and that lookup walked the whole shop.
    __table_args__ = (Index("ix_customer_identities_customer", "customer_id", "shop_id"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(254), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "channel", "external_order_id"),
        Index("ix_orders_shop_customer", "shop_id", "customer_id"),
        Index("ix_orders_shop_placed", "shop_id", "placed_at", "id"),
        Index("ix_orders_import", "import_id", postgresql_where="import_id IS NOT NULL"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    external_order_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    total_fen: Mapped[int] = mapped_column(BigInteger)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Refunds by the source's refund id (fen), so a refund notification and an order snapshot that both
    # carry the same refund count it once.
    refunds: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    coupon_codes: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    buyer_nick: Mapped[str | None] = mapped_column(String(128))
    receiver: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The history import that last wrote this order: downstream services fetch an import's orders by it.
    import_id: Mapped[str | None] = mapped_column(String(32))
    source_modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ShopSettings(Base):
    """How ingest treats one shop's data. A shop without a row uses the defaults."""

    __tablename__ = "shop_settings"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    merge_by_mobile: Mapped[bool] = mapped_column(Boolean, default=True)
    # Marketplaces such as Taobao send shop-local wall-clock times without an offset.
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    """A webhook notification that was processed: its sender's id makes a redelivery a no-op."""

    __tablename__ = "webhook_deliveries"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookFailure(Base):
    """A webhook that was refused or could not be used, kept raw for inspection."""

    __tablename__ = "webhook_failures"
    __table_args__ = (Index("ix_webhook_failures_shop", "shop_id", "received_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    topic: Mapped[str | None] = mapped_column(String(100))
    delivery_id: Mapped[str | None] = mapped_column(String(200))
    status_code: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Import(Base):
    """One bulk import of order history and its progress."""

    __tablename__ = "imports"
    __table_args__ = (Index("ix_imports_shop", "shop_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    encoding: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # queued, running, completed, failed
    dry_run: Mapped[bool] = mapped_column(Boolean)
    award_points: Mapped[bool] = mapped_column(Boolean)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_imported: Mapped[int] = mapped_column(Integer, default=0)
    rows_skipped: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    customers_created: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    placed_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    placed_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImportRowError(Base):
    """A row of an import that could not be used: its line and what was wrong."""

    __tablename__ = "import_errors"

    import_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    line: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    error: Mapped[str] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
