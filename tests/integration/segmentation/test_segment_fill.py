"""A segment without members is filled without looking for members it already has. When
`segment_members` had been vacuumed empty, the planner took it for empty and scanned all of it for
every matching profile while the same statement grew it: saving a segment of a million buyers ran past
the gateway's 30 s (it takes ~6 s). Once it has members, a refresh inserts who entered and deletes who
left, as before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.db import Database
from laoke.testing.servers import ServerSet
from services.segmentation.models import Segment
from services.segmentation.segments import refresh_segment

BUYERS = 2_000
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture
async def shop_session(stack: ServerSet) -> AsyncIterator[tuple[AsyncSession, Database, str]]:
    """A new shop of 2,000 buyers with an order each (rolled back)."""
    shop = f"shp_fill_{uuid.uuid4().hex[:12]}"
    db = Database(stack["segmentation"].settings)
    try:
        async with db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO segmentation.profiles (shop_id, customer_id, orders_count) "
                    "SELECT :shop, 'cus_' || n, 1 FROM generate_series(1, :buyers) n"
                ),
                {"shop": shop, "buyers": BUYERS},
            )
            yield session, db, shop
            await session.rollback()
    finally:
        await db.dispose()


async def test_a_new_segment_is_filled_without_reading_the_members_and_refreshed_with_them(
    shop_session: tuple[AsyncSession, Database, str],
) -> None:
    session, db, shop = shop_session
    segment = Segment(
        id=f"seg_{uuid.uuid4().hex[:12]}",
        shop_id=shop,
        name="下过单",
        rule={"all": [{"field": "orders_count", "op": "gte", "value": 1}]},
    )
    session.add(segment)
    await session.flush()

    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await refresh_segment(session, segment, NOW, announce=False) == (BUYERS, 0)
        fill = [s for s in statements if "INSERT INTO segmentation.segment_members" in s]
        assert len(fill) == 1
        assert "FROM segmentation.segment_members" not in fill[0], fill[0]
        assert "DELETE FROM segmentation.segment_members" not in fill[0]

        # With members, who entered is inserted and who left deleted, each once.
        await session.execute(
            text(
                "UPDATE segmentation.profiles SET orders_count = 0 "
                "WHERE shop_id = :shop AND customer_id IN ('cus_1', 'cus_2', 'cus_3')"
            ),
            {"shop": shop},
        )
        await session.execute(
            text(
                "INSERT INTO segmentation.profiles (shop_id, customer_id, orders_count) "
                "VALUES (:shop, 'cus_new', 2)"
            ),
            {"shop": shop},
        )
        statements.clear()
        assert await refresh_segment(session, segment, NOW) == (1, 3)
        refresh = [s for s in statements if "INSERT INTO segmentation.segment_members" in s]
        assert len(refresh) == 1 and "DELETE FROM segmentation.segment_members" in refresh[0]
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)

    members = await session.scalar(
        text("SELECT count(*) FROM segmentation.segment_members WHERE shop_id = :shop AND segment_id = :id"),
        {"shop": shop, "id": segment.id},
    )
    events = await session.scalar(
        text("SELECT count(*) FROM segmentation.outbox WHERE shop_id = :shop"), {"shop": shop}
    )
    assert (members, events) == (BUYERS - 3 + 1, 4)  # the first fill announces nothing
