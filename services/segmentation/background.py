"""Per-shop work asked for through the API and done after the answer: a large shop's RFM rescore
(services/segmentation/rescores.py) or CLV fit (services/segmentation/clv_fits.py).

The request is a committed row; a task of the replica that took it works through it under the shop's
advisory lock for that kind of work, and the scheduled refresh does whatever a stopped replica left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from sqlalchemy import TextClause, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.db import Database
from services.segmentation.models import Profile

log = structlog.get_logger(__name__)


async def is_large(session: AsyncSession, shop_id: str, limit: int) -> bool:
    """More than `limit` customers (counted no further than that)."""
    some = select(Profile.customer_id).where(Profile.shop_id == shop_id).limit(limit + 1).subquery()
    return int(await session.scalar(select(func.count()).select_from(some)) or 0) > limit


# Strong references: the event loop keeps only weak ones to running tasks.
_running: set[asyncio.Task[None]] = set()


async def work_through(
    db: Database,
    try_lock: TextClause,
    shop_id: str,
    step: Callable[[AsyncSession], Awaitable[bool]],
    *,
    give_up_after: float,
) -> None:
    """Run `step` (one request, in its own transaction under the shop's lock; False when none is left)
    until none is left. While another transaction holds the lock look again every second; after
    `give_up_after` seconds leave the rest to the scheduled refresh."""
    deadline = time.monotonic() + give_up_after
    while True:
        async with db.transaction() as session:
            locked = bool(await session.scalar(try_lock, {"shop": shop_id}))
            if locked and not await step(session):
                return
        if locked:  # committed; a newer request may have come meanwhile
            continue
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(1.0)


def start(work: Coroutine[Any, Any, None], failure: str, shop_id: str) -> None:
    """Run `work` in this process; should it fail, log `failure` (the request stays for the scheduled
    refresh)."""

    async def guarded() -> None:
        try:
            await work
        except Exception:
            log.exception(failure, shop_id=shop_id)

    task = asyncio.create_task(guarded())
    _running.add(task)
    task.add_done_callback(_running.discard)
