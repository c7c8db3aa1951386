"""The background loops of a messaging process that runs workers: dispatchers, campaign snapshots,
outbound webhook deliveries and the time-driven automations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import structlog
from fastapi import FastAPI

from laoke.kit import clock
from laoke.kit.db import Database
from services.messaging import automations, campaigns, webhooks
from services.messaging.dispatcher import Dispatcher, Sender
from services.messaging.settings import MessagingSettings

log = structlog.get_logger(__name__)


async def run_campaigns(db: Database, settings: MessagingSettings, stop: asyncio.Event) -> None:
    """Snapshots due campaigns (one per transaction, skipping those another replica holds) and
    completes the ones with nothing left to send."""
    while not stop.is_set():
        started = 0
        try:
            async with db.transaction() as session:
                started = await campaigns.start_due(session, settings, clock.now())
            async with db.transaction() as session:
                await campaigns.complete_finished(session, clock.now())
        except Exception:
            log.exception("campaign_jobs_failed")
        if not started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.campaign_seconds)


def dispatcher_lifespan(
    settings: MessagingSettings, *, enabled: bool
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not enabled:
            yield
            return
        stop = asyncio.Event()
        loops = [
            # Several loops per process: while one waits on PostgreSQL another renders and sends.
            *(
                asyncio.create_task(Dispatcher(app.state.db, settings).run(stop), name=f"dispatcher-{n}")
                for n in range(settings.dispatch_loops)
            ),
            asyncio.create_task(
                automations.run_jobs(app.state.db, Sender(settings), stop), name="automation-jobs"
            ),
            asyncio.create_task(run_campaigns(app.state.db, settings, stop), name="campaign-jobs"),
            asyncio.create_task(webhooks.run(app.state.db, settings, stop), name="webhook-deliveries"),
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)

    return lifespan
