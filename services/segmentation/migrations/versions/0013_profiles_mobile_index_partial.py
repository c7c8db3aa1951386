"""The mobile search index holds only profiles with a mobile, so a lookup by customer cannot pick it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_profiles_shop_mobile", table_name="profiles", schema="segmentation")
    op.create_index(
        "ix_profiles_shop_mobile",
        "profiles",
        ["shop_id", "mobile"],
        schema="segmentation",
        postgresql_where=sa.text("mobile IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_profiles_shop_mobile", table_name="profiles", schema="segmentation")
    op.create_index("ix_profiles_shop_mobile", "profiles", ["shop_id", "mobile"], schema="segmentation")
