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

from datetime import datetime

import structlog
from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.db import Database
from services.segmentation import background, rfm, rfm_config, segments
from services.segmentation.models import RfmRescoreRequest

log = structlog.get_logger(__name__)

_TRY_LOCK = text(
    "SELECT pg_try_advisory_xact_lock(hashtextextended('segmentation.rfm_rescore:' || :shop, 0))"
)


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


async def _rescore_requested(session: AsyncSession, shop_id: str) -> bool:
    """Under the shop's rescore lock: the waiting request done; False when none waits."""
    asked = await requested_at(session, shop_id)
    if asked is None:
        return False
    changed, lifecycle, classes = await rescore_shop(session, shop_id)
    await done(session, shop_id, asked)
    log.info("rfm_rescored", shop_id=shop_id, changed=changed, lifecycle=lifecycle, classes=classes)
    return True


async def run_requested(db: Database, shop_id: str, *, give_up_after: float = 600.0) -> None:
    """Do the shop's requested rescores until none is left (background.work_through)."""
    await background.work_through(
        db,
        _TRY_LOCK,
        shop_id,
        lambda session: _rescore_requested(session, shop_id),
        give_up_after=give_up_after,
    )


def start(db: Database, shop_id: str) -> None:
    """Run the shop's requested rescore in this process, after the request has been committed."""
    background.start(run_requested(db, shop_id), "rfm_rescore_failed", shop_id)
