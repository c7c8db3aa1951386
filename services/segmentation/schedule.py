"""The scheduled refresh: labels and segments move with time (沉睡 on day 91) even when no event arrives.

Any number of replicas may run the loop; a PostgreSQL advisory lock lets one of them work per round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI
from sqlalchemy import select, text

from laoke.kit import clock
from laoke.kit.db import Database
from services.segmentation import clv_fits, rescores, rfm, rfm_config, segments
from services.segmentation.models import Profile

log = structlog.get_logger(__name__)

_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended('segmentation.rfm_refresh', 0))")


async def refresh_all(db: Database) -> int:
    """Rescore every shop once (one transaction per shop), then run the CLV fits whose replica stopped
    before doing them; 0 when another replica holds the round."""
    async with db.transaction() as session:
        if not await session.scalar(_LOCK):
            return 0
        left_behind = await clv_fits.waiting(session)
        shops = list(await session.scalars(select(Profile.shop_id).distinct()))
        changed = 0
        for shop_id in shops:
            if not await rescores.try_lock(session, shop_id):
                continue  # a requested whole-shop rescore is under way: it brings the shop up to date
            asked = await rescores.requested_at(session, shop_id)
            settings = await rfm_config.load(session, shop_id)
            now = clock.now()
            # A requested rescore still waiting (its replica stopped first) counts every order afresh.
            count, lifecycle, classes = await rfm.rescore(
                session, shop_id, settings, now, incremental=asked is None
            )
            if asked is not None:
                await rescores.done(session, shop_id, asked)
            # Rules over time (recency_days, "carted within 7 days") move without any event.
            entered, exited = await segments.refresh_shop(session, shop_id, now)
            changed += count
            if count:
                log.info(
                    "rfm_refreshed", shop_id=shop_id, changed=count, lifecycle=lifecycle, classes=classes
                )
            if entered or exited:
                log.info("segments_refreshed", shop_id=shop_id, entered=entered, exited=exited)
    for shop_id in left_behind:  # each in its own transactions; one being fitted right now is skipped
        await clv_fits.run_requested(db, shop_id, give_up_after=0)
    return changed


async def _loop(db: Database, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await refresh_all(db)
        except Exception:  # a failed round is retried on the next one
            log.exception("rfm_refresh_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def refresh_lifespan(every: float, enabled: bool):  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(_loop(app.state.db, every, stop)) if enabled else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task

    return lifespan
