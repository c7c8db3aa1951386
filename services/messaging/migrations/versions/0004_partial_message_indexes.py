"""partial message indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:07:30.717992
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Autogenerate does not see a changed index predicate: written by hand.
def upgrade() -> None:
    op.drop_index("ix_messages_campaign", table_name="messages", schema="messaging")
    op.drop_index("ix_messages_provider", table_name="messages", schema="messaging")
    op.create_index(
        "ix_messages_campaign", "messages", ["shop_id", "campaign_id", "status"], unique=False,
        schema="messaging", postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_provider", "messages", ["provider_message_id"], unique=False,
        schema="messaging", postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_campaign", table_name="messages", schema="messaging")
    op.drop_index("ix_messages_provider", table_name="messages", schema="messaging")
    op.create_index(
        "ix_messages_campaign", "messages", ["shop_id", "campaign_id", "status"], unique=False, schema="messaging"
    )
    op.create_index("ix_messages_provider", "messages", ["provider_message_id"], unique=False, schema="messaging")
