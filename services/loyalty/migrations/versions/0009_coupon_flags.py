"""Coupon reuses become coupon flags: any use of a code against its rules, with why and by whom

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupon_flags",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("holder_id", sa.String(length=32), nullable=False),
        sa.Column("buyer_id", sa.String(length=32), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_flags")),
        sa.UniqueConstraint(
            "shop_id", "code", "order_id", "reason", name=op.f("uq_coupon_flags_shop_id_code_order_id_reason")
        ),
        schema="loyalty",
    )
    op.create_index(
        "ix_coupon_flags_template", "coupon_flags", ["shop_id", "template_id", "id"], schema="loyalty"
    )
    # Every recorded reuse carries over; its buyer is the order's customer where loyalty saw the order.
    op.execute(
        """
        INSERT INTO loyalty.coupon_flags
            (shop_id, template_id, code, order_id, reason, holder_id, buyer_id, flagged_at)
        SELECT r.shop_id, c.template_id, r.code, r.order_id, 'reused', c.customer_id,
               coalesce(o.customer_id, c.customer_id), r.flagged_at
        FROM loyalty.coupon_reuses r
        JOIN loyalty.coupons c ON c.shop_id = r.shop_id AND c.code = r.code
        LEFT JOIN loyalty.orders o ON o.shop_id = r.shop_id AND o.order_id = r.order_id
        ORDER BY r.flagged_at
        """
    )
    op.drop_table("coupon_reuses", schema="loyalty")


def downgrade() -> None:
    op.create_table(
        "coupon_reuses",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "code", "order_id", name=op.f("pk_coupon_reuses")),
        schema="loyalty",
    )
    op.execute(
        """
        INSERT INTO loyalty.coupon_reuses (shop_id, code, order_id, flagged_at)
        SELECT shop_id, code, order_id, flagged_at FROM loyalty.coupon_flags WHERE reason = 'reused'
        """
    )
    op.drop_index("ix_coupon_flags_template", table_name="coupon_flags", schema="loyalty")
    op.drop_table("coupon_flags", schema="loyalty")
