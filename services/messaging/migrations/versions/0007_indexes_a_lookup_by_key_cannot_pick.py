"""Contacts and orders: no index led by the shop that a lookup by key could pick

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "messaging"


def upgrade() -> None:
    op.drop_index("ix_contacts_email", table_name="contacts", schema=S)
    op.drop_index("ix_contacts_mobile", table_name="contacts", schema=S)
    op.create_index(
        "ix_contacts_mobile",
        "contacts",
        ["shop_id", "mobile"],
        schema=S,
        postgresql_where=sa.text("mobile IS NOT NULL"),
    )
    op.drop_index("ix_orders_customer_paid", table_name="orders", schema=S)
    op.create_index("ix_orders_customer_paid", "orders", ["customer_id", "shop_id", "paid_at"], schema=S)
    op.drop_index("ix_orders_paid", table_name="orders", schema=S)
    op.create_index(
        "ix_orders_paid", "orders", ["shop_id", "paid_at"], schema=S, postgresql_where=sa.text("paid_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_orders_paid", table_name="orders", schema=S)
    op.create_index("ix_orders_paid", "orders", ["shop_id", "paid_at"], schema=S)
    op.drop_index("ix_orders_customer_paid", table_name="orders", schema=S)
    op.create_index("ix_orders_customer_paid", "orders", ["shop_id", "customer_id", "paid_at"], schema=S)
    op.drop_index("ix_contacts_mobile", table_name="contacts", schema=S)
    op.create_index("ix_contacts_mobile", "contacts", ["shop_id", "mobile"], schema=S)
    op.create_index("ix_contacts_email", "contacts", ["shop_id", "email"], schema=S)
