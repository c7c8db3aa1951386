"""Tables of the ingest schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from laoke.kit.db import declarative_base_for
from laoke.kit.outbox import plumbing_tables

SCHEMA = "ingest"
Base = declarative_base_for(SCHEMA)
plumbing = plumbing_tables(Base.metadata)


class Customer(Base):
    """A buyer of one shop; the stable Laoke id every other service keys on."""

    __tablename__ = "customers"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomerIdentity(Base):
    """How one channel knows a buyer (Taobao open uid, Shopify customer id, e-mail, ...)."""

    __tablename__ = "customer_identities"
    __table_args__ = (Index("ix_customer_identities_customer", "shop_id", "customer_id"),)

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "channel", "external_order_id"),
        Index("ix_orders_shop_customer", "shop_id", "customer_id"),
        Index("ix_orders_shop_placed", "shop_id", "placed_at", "id"),
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
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
