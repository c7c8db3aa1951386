"""Profiles' pages half free (fillfactor 50): a whole-shop rescore updates every row in place

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 04:40:00

A whole-shop rescore writes a new version of every profile in one transaction, and none of the old ones
can be pruned before it commits: only a page with room for all its rows twice keeps every update on the
page (HOT, no index touched). At fillfactor 80, 1 in 5 found room and the rest went to new pages with an
entry in each of the four indexes. Measured on 1,000,000 profiles (same box, runs interleaved): first
scoring 27.0 / 20.8 s → 13.5 / 12.0 s, a preset change 46.7 / 33.4 s → 32.6 / 29.3 s, the table after them
554-677 MB → 488 MB, segment preview unchanged (0.21-0.24 s).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Applies to pages written from now on; `VACUUM FULL segmentation.profiles` repacks older ones.
    op.execute("ALTER TABLE segmentation.profiles SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE segmentation.profiles SET (fillfactor = 80)")
