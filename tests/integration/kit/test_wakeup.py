"""Loops sleep until PostgreSQL NOTIFYs their channel, or their poll interval runs out."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from sqlalchemy import text

from laoke.kit.db import Database
from laoke.kit.notify import Wakeup
from laoke.testing.servers import ServerSet
from services.messaging.queue import QUEUED_CHANNEL


async def _timed(wakeup: Wakeup, stop: asyncio.Event, poll_seconds: float, seen: int) -> float:
    started = time.monotonic()
    await wakeup.wait(stop, poll_seconds, seen)
    return time.monotonic() - started


async def test_a_notify_wakes_every_waiter_and_none_is_lost(database_url: str) -> None:
    channel = f"test_wakeup_{uuid.uuid4().hex[:8]}"
    wakeup = Wakeup(database_url, channel)
    notifier = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    stop = asyncio.Event()
    try:
        # Nothing happens: the poll interval is the limit.
        assert 0.25 <= await _timed(wakeup, stop, 0.3, wakeup.count) < 2

        seen = wakeup.count
        waiters = [asyncio.create_task(_timed(wakeup, stop, 30, seen)) for _ in range(2)]
        await asyncio.sleep(0.2)
        await notifier.execute(f"NOTIFY {channel}")
        assert all(t < 5 for t in await asyncio.gather(*waiters))

        # A notification while the loop was busy elsewhere: its next wait returns at once.
        seen = wakeup.count
        await notifier.execute(f"NOTIFY {channel}")
        await asyncio.sleep(0.5)
        assert await _timed(wakeup, stop, 30, seen) < 0.1

        # Stopping ends a wait too.
        waiting = asyncio.create_task(_timed(wakeup, stop, 30, wakeup.count))
        await asyncio.sleep(0.1)
        stop.set()
        assert await waiting < 5
    finally:
        await notifier.close()
        await wakeup.close()


async def test_queued_messages_wake_the_dispatchers_at_commit(stack: ServerSet) -> None:
    settings = stack["messaging"].settings
    wakeup = Wakeup(settings.database_url, QUEUED_CHANNEL)
    db = Database(settings)
    stop = asyncio.Event()
    try:
        await wakeup.wait(stop, 0.01, wakeup.count)  # listening from here on
        seen = wakeup.count
        async with db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO messaging.messages (shop_id, source, customer_id, channel, marketing, "
                    "template_id, status, variables, not_before, attempts, deferred) "
                    "VALUES (:shop, 'test', 'cus_wake', 'inapp', false, 'tpl_none', 'cancelled', '{}', "
                    "now(), 0, false)"
                ),
                {"shop": f"shp_wake_{uuid.uuid4().hex[:8]}"},
            )
            await asyncio.sleep(0.3)
            assert wakeup.count == seen  # nothing before the commit
        assert await _timed(wakeup, stop, 30, seen) < 5
        assert wakeup.count > seen
    finally:
        await db.dispose()
        await wakeup.close()
