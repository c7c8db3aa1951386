"""The index of a customer's identities leads with the customer, so a lookup of identities by key cannot pick it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 06:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_customer_identities_customer", table_name="customer_identities", schema="ingest")
    op.create_index(
        "ix_customer_identities_customer", "customer_identities", ["customer_id", "shop_id"], schema="ingest"
    )


def downgrade() -> None:
    op.drop_index("ix_customer_identities_customer", table_name="customer_identities", schema="ingest")
    op.create_index(
        "ix_customer_identities_customer", "customer_identities", ["shop_id", "customer_id"], schema="ingest"
    )
