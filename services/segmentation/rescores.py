"""Whole-shop rescores of large shops, in the background.

A changed RFM configuration rescores the whole shop and announces every label that moves. For a shop of
a million customers that is ~40 s of work, longer than the gateway waits for an answer, so above
`rfm_inline_rescore_limit` customers the request is recorded (`rfm_rescore_requests`) and answered at
once, and a task of the same replica does the rescore. Should that replica stop first, the next
scheduled refresh finds the request and does it instead (services/segmentation/schedule.py).

One rescore per shop at a time: each takes the shop's rescore lock (an advisory lock, also taken by the
scheduled refresh for every shop it rescores); a task that does not get it waits for the holder.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import structlog
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.db import Database
from services.segmentation import rfm, rfm_config, segments
from services.segmentation.models import Profile, RfmRescoreRequest

log = structlog.get_logger(__name__)

_TRY_LOCK = text(
    "SELECT pg_try_advisory_xact_lock(hashtextextended('segmentation.rfm_rescore:' || :shop, 0))"
)
# Strong references: the event loop keeps only weak ones to running tasks.
_running: set[asyncio.Task[None]] = set()


async def is_large(session: AsyncSession, shop_id: str, limit: int) -> bool:
    """More than `limit` customers (counted no further than that)."""
    some = select(Profile.customer_id).where(Profile.shop_id == shop_id).limit(limit + 1).subquery()
    return int(await session.scalar(select(func.count()).select_from(some)) or 0) > limit


async def request(session: AsyncSession, shop_id: str) -> datetime:
    now = clock.now()
    await session.execute(
        insert(RfmRescoreRequest)
        .values(shop_id=shop_id, requested_at=now)
        .on_conflict_do_update(index_elements=["shop_id"], set_={"requested_at": now})
    )
    return now


async def requested_at(session: AsyncSession, shop_id: str) -> datetime | None:
    return await session.scalar(
        select(RfmRescoreRequest.requested_at).where(RfmRescoreRequest.shop_id == shop_id)
    )


async def try_lock(session: AsyncSession, shop_id: str) -> bool:
    """The shop's rescore lock until the transaction ends; False when another transaction holds it."""
    return bool(await session.scalar(_TRY_LOCK, {"shop": shop_id}))


async def rescore_shop(session: AsyncSession, shop_id: str) -> tuple[int, int, int]:
    """Count every order of the shop again under its configuration, and bring its segments along."""
    now = clock.now()
    counts = await rfm.rescore(session, shop_id, await rfm_config.load(session, shop_id), now)
    await segments.refresh_shop(session, shop_id, now)
    return counts


async def done(session: AsyncSession, shop_id: str, asked: datetime) -> None:
    """Clear the request this rescore answered; a newer one (asked meanwhile) stays."""
    await session.execute(
        delete(RfmRescoreRequest).where(
            RfmRescoreRequest.shop_id == shop_id, RfmRescoreRequest.requested_at <= asked
        )
    )


async def run_requested(db: Database, shop_id: str, *, give_up_after: float = 600.0) -> None:
    """Do the shop's requested rescores until none is left. While another transaction holds the shop's
    rescore lock (another such task, or a scheduled refresh round) look again every second; after
    `give_up_after` seconds leave the request to the scheduled refresh."""
    deadline = time.monotonic() + give_up_after
    while True:
        async with db.transaction() as session:
            locked = await try_lock(session, shop_id)
            if locked:
                asked = await requested_at(session, shop_id)
                if asked is None:
                    return
                changed, lifecycle, classes = await rescore_shop(session, shop_id)
                await done(session, shop_id, asked)
        if locked:  # done and committed; a newer request may have come meanwhile
            log.info("rfm_rescored", shop_id=shop_id, changed=changed, lifecycle=lifecycle, classes=classes)
            continue
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(1.0)


def start(db: Database, shop_id: str) -> None:
    """Run the shop's requested rescore in this process, after the request has been committed."""

    async def guarded() -> None:
        try:
            await run_requested(db, shop_id)
        except Exception:  # the request stays; the scheduled refresh does it
            log.exception("rfm_rescore_failed", shop_id=shop_id)

    task = asyncio.create_task(guarded())
    _running.add(task)
    task.add_done_callback(_running.discard)
