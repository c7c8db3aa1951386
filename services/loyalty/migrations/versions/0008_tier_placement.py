"""Where the placement of a shop's existing members in newly set tiers has got to

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 13:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("programs", sa.Column("placed_after", sa.String(32), nullable=True), schema="loyalty")


def downgrade() -> None:
    op.drop_column("programs", "placed_after", schema="loyalty")
