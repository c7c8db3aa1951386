"""Clear CLV predictions that fits before the bounded search could write (negative purchases or value)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 23:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The customer API refuses to show a negative prediction (it answered 500); the next fit fills
    # these buyers in again.
    op.execute(
        "UPDATE segmentation.profiles SET p_alive = NULL, expected_purchases_90d = NULL, clv_365d_fen = NULL "
        "WHERE clv_365d_fen < 0 OR expected_purchases_90d < 0 OR p_alive < 0 OR p_alive > 1"
    )


def downgrade() -> None:
    pass  # the cleared predictions were wrong; there is nothing to restore
