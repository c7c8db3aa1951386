"""Tables of the loyalty schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from laoke.kit.db import declarative_base_for
from laoke.kit.merges import merged_customers_table
from laoke.kit.outbox import plumbing_tables

SCHEMA = "loyalty"
Base = declarative_base_for(SCHEMA)
plumbing = plumbing_tables(Base.metadata)
merged_customers = merged_customers_table(Base.metadata)


class Member(Base):
    """A customer's standing in the shop's programme. The balance is a cached sum of the ledger,
    updated in the same transaction as every entry."""

    __tablename__ = "members"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    points_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PointsEntry(Base):
    """One append-only change of a member's points, with the reference that caused it. The unique
    `(shop, kind, reference)` makes earning idempotent per order even without the consumer dedupe."""

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
    reference: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
