"""Waking background loops on PostgreSQL NOTIFY, with a timed poll as the safety net.

A loop that polls a table often enough for low latency spends most of its polls finding nothing, and
each empty poll can be dear (a queue index full of entries a long transaction has not committed yet).
So the writer's trigger NOTIFYs a channel at commit, and the loop waits for that or its poll interval,
whichever comes first. Notifications are an optimisation only: a lost connection or a missed NOTIFY
costs at most one poll interval.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

log = structlog.get_logger(__name__)


class Wakeup:
    """One LISTEN connection per process, shared by any number of waiting loops."""

    def __init__(self, dsn: str, channel: str) -> None:
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.channel = channel
        # Bumped by every notification: a loop passes the count it saw before its last round of work,
        # so a notification that arrived during the work is not lost.
        self.count = 0
        self._event = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._failing = False

    def _notified(self, *_: object) -> None:
        self.count += 1
        self._event.set()
        self._event = asyncio.Event()

    async def _listen(self) -> None:
        async with self._connecting:
            if self._connection is not None and not self._connection.is_closed():
                return
            try:
                self._connection = await asyncpg.connect(self.dsn, timeout=5)
                await self._connection.add_listener(self.channel, self._notified)
            except Exception as exc:  # only an optimisation: polling goes on without it
                self._connection = None
                if not self._failing:
                    log.warning("listen_failed", channel=self.channel, error=f"{type(exc).__name__}: {exc}")
                self._failing = True
                return
            self._failing = False

    async def wait(self, stop: asyncio.Event, poll_seconds: float, seen: int) -> None:
        """Return at the first notification after `seen` (at once if one came already), at `stop`, or
        after `poll_seconds`."""
        await self._listen()
        if self.count != seen or stop.is_set():
            return
        waiters = {asyncio.ensure_future(self._event.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(waiters, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
