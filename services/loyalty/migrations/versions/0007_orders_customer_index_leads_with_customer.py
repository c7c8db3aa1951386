"""The index of a member's orders leads with the customer, so a lookup of orders by id cannot pick it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 04:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_loyalty_orders_customer", table_name="orders", schema="loyalty")
    op.create_index("ix_loyalty_orders_customer", "orders", ["customer_id", "shop_id"], schema="loyalty")


def downgrade() -> None:
    op.drop_index("ix_loyalty_orders_customer", table_name="orders", schema="loyalty")
    op.create_index("ix_loyalty_orders_customer", "orders", ["shop_id", "customer_id"], schema="loyalty")
